import Dispatch
import Foundation
import Glibc
import Testing
@testable import ProxyCore

extension EventLoopSuites {
@Suite("EventLoop StreamConnection")
struct EventLoopStreamConnectionTests {
    let loop = EventLoop(label: "test.stream")

    @Test func echoesBytesBothWays() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { d, _ in d.echo = true }
        let message = Array("hello, proxyd".utf8)
        let echoed = await TestIO.blocking {
            TestIO.sendAll(peer, message)
            return TestIO.read(peer, count: message.count)
        }
        #expect(echoed == message)
        #expect(await TestIO.onLoop(loop) { delegate.bytes } == message)
        // Nothing had to wait for the socket: no write source was made.
        #expect(await TestIO.onLoop(loop) { connection.hasWriteSource } == false)
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        #expect(await TestIO.onLoop(loop) { delegate.events.last == .close && delegate.failures.isEmpty })
    }

    @Test func largeWriteToSlowReaderArrivesInOrderAndDrains() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop)
        // 8 MiB in chunks of uneven sizes, so partial writes land inside chunks and across chunk boundaries.
        let total = 8 * 1024 * 1024
        let payload = TestIO.pattern(count: total)
        let sizes = [1, 7, 65_536, 100_003, 4_096, 333_333, 13]
        let buffered = await TestIO.onLoop(loop) { () -> Int in
            var offset = 0
            var index = 0
            while offset < total {
                let size = min(sizes[index % sizes.count], total - offset)
                connection.write(Array(payload[offset..<offset + size]))
                offset += size
                index += 1
            }
            return connection.bufferedWriteBytes
        }
        // The socket buffer is far smaller than 8 MiB: the EAGAIN path must have been taken (and the write source
        // made for it).
        #expect(buffered > 0)
        #expect(await TestIO.onLoop(loop) { connection.hasWriteSource })
        #expect(await TestIO.onLoop(loop) { delegate.drainCount } == 0)
        let received = await TestIO.blocking {
            TestIO.read(peer, count: total, chunk: 16_384, pauseMicroseconds: 100)
        }
        #expect(received.count == total)
        #expect(received == payload)
        #expect(await TestIO.eventually(on: loop) { delegate.drainCount == 1 })
        let stats = await TestIO.onLoop(loop) {
            (connection.bufferedWriteBytes, connection.wouldBlockWriteCount, connection.writeEventCount)
        }
        #expect(stats.0 == 0)
        #expect(stats.1 >= 1)
        #expect(stats.2 >= 1)
        // A write that fits goes out at once: no drain callback for it.
        await TestIO.onLoop(loop) { connection.write([1, 2, 3]) }
        #expect(await TestIO.blocking { TestIO.read(peer, count: 3) } == [1, 2, 3])
        #expect(await TestIO.onLoop(loop) { (connection.bufferedWriteBytes, delegate.drainCount) } == (0, 1))
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func queuedSlicesGoOutTogetherAndBackedUpOnesStopPinningTheirStorage() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop)
        let payload = TestIO.pattern(count: 4 << 20)
        // 4 MiB as 8 KiB slices of 64 KiB buffers (DATA payloads of decrypted reads), queued, then one flush.
        let pinned = await TestIO.onLoop(loop) { () -> Bool in
            var sources: [ByteBuffer] = []
            for start in stride(from: 0, to: payload.count, by: 65_536) {
                var source = ByteBuffer(capacity: 65_536)
                source.writeBytes(payload[start..<(start + 65_536)])
                for k in 0..<8 { connection.enqueue(source.slice(at: k * 8192, length: 8192)) }
                sources.append(source)
            }
            connection.flushQueued()
            // The socket took a few hundred KiB; the slices still queued were given storage of their own.
            var last = sources.removeLast()
            return !last.holdsStorageAlone()
        }
        #expect(!pinned)
        #expect(await TestIO.onLoop(loop) { connection.wouldBlockWriteCount } >= 1)
        let received = await TestIO.blocking { TestIO.read(peer, count: payload.count, chunk: 32_768) }
        #expect(received == payload)
        #expect(await TestIO.eventually(on: loop) { delegate.drainCount == 1 })
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func aSliceQueuedBehindABackedUpSocketDoesNotPinItsBuffer() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop)
        let filler = TestIO.pattern(count: 8 << 20)
        let tail = TestIO.pattern(count: 65_536, seed: 7)
        let (waiting, pinned, pinnedBeforeBackingUp) = await TestIO.onLoop(loop) { () -> (Bool, Bool, Bool) in
            var early = ByteBuffer(bytes: tail)
            connection.enqueue(early.slice(at: 0, length: 100))
            let pinnedEarly = !early.holdsStorageAlone()   // not backed up yet: queued as it is
            connection.write(ByteBuffer(bytes: filler))     // far more than the socket buffer: EAGAIN
            var decrypted = ByteBuffer(bytes: tail)
            connection.enqueue(decrypted.slice(at: 1000, length: 8192))
            return (connection.isWaitingToWrite, !decrypted.holdsStorageAlone(), pinnedEarly)
        }
        #expect(waiting)
        #expect(pinnedBeforeBackingUp)
        #expect(!pinned)   // copied out at once, without waiting for this socket's next flush
        let received = await TestIO.blocking { TestIO.read(peer, count: 100 + filler.count + 8192, chunk: 65_536) }
        #expect(received == Array(tail[0..<100]) + filler + Array(tail[1000..<9192]))
        #expect(await TestIO.eventually(on: loop) { delegate.drainCount == 1 })
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func eofIsReportedOnceAndTheReadSourceStopsSpinning() async throws {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop)
        TestIO.sendAll(peer, Array("abc".utf8))
        shutdown(peer, Int32(SHUT_WR))
        // Observed without the loop: a source left running at EOF would spin and could starve the loop's queue.
        #expect(await TestIO.eventually { !delegate.eofEvents.values.isEmpty })
        try? await Task.sleep(for: .milliseconds(100))
        try #require(delegate.eofEvents.values.count == 1, "EOF reported \(delegate.eofEvents.values.count) times: the read source spins")
        let eventsAtEOF = await TestIO.onLoop(loop) { connection.readEventCount }
        try? await Task.sleep(for: .milliseconds(50))
        let after = await TestIO.onLoop(loop) { (connection.readEventCount, delegate.eofCount, delegate.events) }
        #expect(after.0 == eventsAtEOF)
        #expect(after.1 == 1)
        #expect(after.2 == [.read(3), .eof])
        #expect(await TestIO.onLoop(loop) { delegate.bytes } == Array("abc".utf8))
        // resumeReading after EOF must not restart the source.
        await TestIO.onLoop(loop) { connection.resumeReading() }
        try? await Task.sleep(for: .milliseconds(20))
        #expect(await TestIO.onLoop(loop) { connection.readEventCount } == eventsAtEOF)
        // Half-close: we can still write, then shut down our side after the queued bytes.
        await TestIO.onLoop(loop) {
            connection.write(Array("bye".utf8))
            connection.shutdownWrite()
            connection.shutdownWrite()
        }
        let tail = await TestIO.blocking { (TestIO.read(peer, count: 3), TestIO.readsEOF(peer)) }
        #expect(tail.0 == Array("bye".utf8))
        #expect(tail.1)
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        #expect(await TestIO.onLoop(loop) { delegate.failures.isEmpty })
    }

    @Test func shutdownWriteWaitsForQueuedBytes() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop)
        let payload = TestIO.pattern(count: 2 * 1024 * 1024, seed: 3)
        let buffered = await TestIO.onLoop(loop) {
            connection.write(payload)
            connection.shutdownWrite()
            connection.write([9])            // ignored after shutdownWrite
            return connection.bufferedWriteBytes
        }
        #expect(buffered > 0)
        let result = await TestIO.blocking { (TestIO.read(peer, count: payload.count + 1), TestIO.readsEOF(peer)) }
        #expect(result.0 == payload)
        #expect(result.1)
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func resetByPeerFailsThenClosesOnce() async {
        let (ours, peer) = TestIO.tcpPair()
        let (delegate, _) = await RecordingDelegate.start(fd: ours, loop: loop)
        // SO_LINGER 0 + close sends RST instead of FIN.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(peer, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(peer)
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        try? await Task.sleep(for: .milliseconds(20))
        let events = await TestIO.onLoop(loop) { delegate.events }
        #expect(events == [.fail(ECONNRESET), .close])
        #expect(await TestIO.onLoop(loop) { delegate.failures.first?.description } == "read: connection reset by peer")
    }

    @Test func writeToClosedPeerFailsWithEPIPEWithoutSignal() async {
        let (ours, peer) = TestIO.socketPair()
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { _, c in c.pauseReading() }
        close(peer)
        await TestIO.onLoop(loop) {
            connection.write(TestIO.pattern(count: 1024))
            connection.write([1])           // dropped, failure already pending
        }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        let events = await TestIO.onLoop(loop) { delegate.events }
        #expect(events == [.fail(EPIPE), .close])
        #expect(await TestIO.onLoop(loop) { connection.isClosed })
    }

    @Test func pauseAndResumeReadingAreIdempotent() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        // Paused before start: the read source is never activated until resumed.
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { _, c in
            c.pauseReading()
            c.pauseReading()
        }
        TestIO.sendAll(peer, [1])
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await TestIO.onLoop(loop) { (delegate.readCalls, connection.readEventCount) } == (0, 0))
        await TestIO.onLoop(loop) { connection.resumeReading(); connection.resumeReading() }
        #expect(await TestIO.eventually(on: loop) { delegate.bytes == [1] })
        await TestIO.onLoop(loop) { connection.pauseReading(); connection.pauseReading() }
        TestIO.sendAll(peer, [2])
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await TestIO.onLoop(loop) { delegate.bytes } == [1])
        await TestIO.onLoop(loop) { connection.resumeReading() }
        #expect(await TestIO.eventually(on: loop) { delegate.bytes == [1, 2] })
        // Close while paused: the suspended source is resumed before it is cancelled (else libdispatch traps).
        await TestIO.onLoop(loop) { connection.pauseReading(); connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func pauseReasonsDoNotResumeEachOther() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { _, c in
            c.pauseReading(for: .backpressure)
            c.pauseReading()
        }
        TestIO.sendAll(peer, [5])
        await TestIO.onLoop(loop) { connection.resumeReading() }     // .backpressure still holds it
        try? await Task.sleep(for: .milliseconds(50))
        #expect(await TestIO.onLoop(loop) { (delegate.readCalls, connection.readingPausedFor) } == (0, .backpressure))
        await TestIO.onLoop(loop) { connection.resumeReading(for: .backpressure) }
        #expect(await TestIO.eventually(on: loop) { delegate.bytes == [5] })
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func readsComeInBoundedSlices() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { _, c in c.pauseReading() }
        let payload = TestIO.pattern(count: 150_000, seed: 1)
        _ = await TestIO.blocking { TestIO.sendAll(peer, payload) }
        await TestIO.onLoop(loop) { connection.resumeReading() }
        #expect(await TestIO.eventually(on: loop) { delegate.bytes.count == payload.count })
        #expect(await TestIO.onLoop(loop) { delegate.bytes } == payload)
        #expect(await TestIO.onLoop(loop) { delegate.maxReadSize } <= 64 * 1024)
        await TestIO.onLoop(loop) { connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
    }

    @Test func closeIsIdempotentAndReportsCloseExactlyOnce() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let target = TestIO.fdTarget(ours)
        let (delegate, connection) = await RecordingDelegate.start(fd: ours, loop: loop) { d, _ in d.closeOnFirstRead = true }
        TestIO.sendAll(peer, [42])
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        await TestIO.onLoop(loop) { connection.close(); connection.close(); connection.write([1]) }
        try? await Task.sleep(for: .milliseconds(30))
        let events = await TestIO.onLoop(loop) { delegate.events }
        #expect(events == [.read(1), .close])
        #expect(await TestIO.onLoop(loop) { connection.isClosed })
        #expect(TestIO.readsEOF(peer))
        #expect(target != nil && !TestIO.openFDTargets().contains(target!))
    }

    @Test(arguments: ["never started", "started", "paused", "eof", "write pending", "write drained"])
    func closeInEverySourceState(state: String) async throws {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let target = TestIO.fdTarget(ours)
        let delegate = RecordingDelegate()
        let connection = StreamConnection(fd: ours, loop: loop)
        await TestIO.onLoop(loop) {
            delegate.connection = connection
            connection.delegate = delegate
            if state != "never started" { connection.start() }
            if state == "paused" { connection.pauseReading() }
        }
        switch state {
        case "eof":
            shutdown(peer, Int32(SHUT_WR))
            #expect(await TestIO.eventually { !delegate.eofEvents.values.isEmpty })
            try? await Task.sleep(for: .milliseconds(20))
            try #require(delegate.eofEvents.values.count == 1, "EOF reported \(delegate.eofEvents.values.count) times: the read source spins")
        case "write pending":
            #expect(await TestIO.onLoop(loop) { () -> Int in
                connection.write(TestIO.pattern(count: 4 * 1024 * 1024))
                return connection.bufferedWriteBytes
            } > 0)
        case "write drained":
            await TestIO.onLoop(loop) { connection.write(TestIO.pattern(count: 1024 * 1024)) }
            _ = await TestIO.blocking { TestIO.read(peer, count: 1024 * 1024) }
            #expect(await TestIO.eventually(on: loop) { delegate.drainCount == 1 })
        default:
            break
        }
        await TestIO.onLoop(loop) { connection.close(); connection.close() }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        try? await Task.sleep(for: .milliseconds(10))
        #expect(await TestIO.onLoop(loop) { delegate.closeCount } == 1)
        #expect(target != nil && !TestIO.openFDTargets().contains(target!))
    }

    @Test func closedConnectionIsReleased() async {
        let (ours, peer) = TestIO.socketPair()
        defer { close(peer) }
        let weakConnection = WeakBox<StreamConnection>()
        let delegate = RecordingDelegate()
        do {
            let connection = StreamConnection(fd: ours, loop: loop)
            weakConnection.value = connection
            await TestIO.onLoop(loop) {
                connection.delegate = delegate
                connection.start()
                connection.pauseReading()
                connection.close()
            }
        }
        #expect(await TestIO.eventually(on: loop) { delegate.closeCount == 1 })
        // The sources' handlers held the connection; after both cancel handlers ran nothing does.
        #expect(await TestIO.eventually { weakConnection.value == nil })
    }
}
}
