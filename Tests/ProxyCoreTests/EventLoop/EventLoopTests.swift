import Dispatch
import Foundation
import Glibc
import Testing
@testable import ProxyCore

extension EventLoopSuites {
@Suite("EventLoop core")
struct EventLoopTests {
    @Test func executeRunsInOrderOnTheLoop() async {
        let loop = EventLoop(label: "test.execute")
        let recorder = Recorder<Int>()
        let inLoop = Recorder<Bool>()
        for i in 0..<100 {
            loop.execute {
                loop.assertInLoop()
                inLoop.append(loop.inLoop)
                recorder.append(i)
            }
        }
        #expect(await TestIO.eventually { recorder.values.count == 100 })
        #expect(recorder.values == Array(0..<100))
        #expect(inLoop.values.allSatisfy { $0 })
        #expect(!loop.inLoop)
    }

    @Test func timerFiresOnceOnTheLoop() async {
        let loop = EventLoop(label: "test.timer")
        let fired = Recorder<Bool>()
        let timer = loop.scheduleTimer(after: .milliseconds(10)) { fired.append(loop.inLoop) }
        #expect(await TestIO.eventually { fired.values.count == 1 })
        try? await Task.sleep(for: .milliseconds(50))
        #expect(fired.values == [true])
        timer.cancel()          // after firing
        timer.cancel()          // twice
        #expect(timer.isCancelled)
    }

    @Test func cancelledTimerNeverFires() async {
        let loop = EventLoop(label: "test.timer.cancel")
        let fired = Recorder<Int>()
        let first = loop.scheduleTimer(after: .milliseconds(30)) { fired.append(1) }
        let second = loop.scheduleTimer(after: .milliseconds(1)) { fired.append(2) }
        await TestIO.onLoop(loop) { first.cancel(); first.cancel() }
        #expect(await TestIO.eventually { fired.values == [2] })
        try? await Task.sleep(for: .milliseconds(80))
        #expect(fired.values == [2])
        second.cancel()
    }

    @Test func timerCancelledFromItsOwnHandlerIsFine() async {
        let loop = EventLoop(label: "test.timer.self")
        let fired = Recorder<Int>()
        let box = TimerBox()
        await TestIO.onLoop(loop) {
            box.timer = loop.scheduleTimer(after: .milliseconds(1)) {
                box.timer?.cancel()
                fired.append(1)
            }
        }
        #expect(await TestIO.eventually { fired.values == [1] })
    }

    @Test func groupHandsOutLoopsRoundRobin() {
        let group = EventLoopGroup(count: 3)
        #expect(group.loops.count == 3)
        let picked = (0..<7).map { _ in group.next() }
        let indices = picked.map { loop in group.loops.firstIndex { $0 === loop }! }
        #expect(indices == [0, 1, 2, 0, 1, 2, 0])
        #expect(Set(group.loops.map { ObjectIdentifier($0.queue) }).count == 3)
    }

    @Test func ioErrorReadsLikeGo() {
        #expect(IOError(errno: ECONNREFUSED, function: "connect").description == "connect: connection refused")
        #expect(IOError(errno: EADDRINUSE, function: "bind").description == "bind: address already in use")
        #expect(IOError(errno: ETIMEDOUT, function: "connect", detail: "i/o timeout").description == "connect: i/o timeout")
        #expect(IOError(errno: EACCES, function: "bind").message == "permission denied")
    }

    @Test func posixReportsWouldBlockEOFAndErrors() throws {
        let (ours, peer) = TestIO.socketPair()
        defer { close(ours) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let empty = try buffer.withUnsafeMutableBytes { try Posix.read(fd: ours, into: $0) }
        guard case .wouldBlock = empty else { Issue.record("expected wouldBlock, got \(empty)"); return }
        TestIO.sendAll(peer, [7, 8])
        let two = try buffer.withUnsafeMutableBytes { try Posix.read(fd: ours, into: $0) }
        guard case .processed(2) = two else { Issue.record("expected 2 bytes, got \(two)"); return }
        close(peer)
        let eof = try buffer.withUnsafeMutableBytes { try Posix.read(fd: ours, into: $0) }
        guard case .processed(0) = eof else { Issue.record("expected EOF, got \(eof)"); return }
        #expect(throws: IOError(errno: EPIPE, function: "write")) {
            _ = try [UInt8](repeating: 1, count: 8).withUnsafeBytes { try Posix.send(fd: ours, from: $0) }
        }
    }

    @Test func socketAddressDescriptions() {
        #expect(SocketAddress.v4(host: "127.0.0.1", port: 8001).description == "127.0.0.1:8001")
        #expect(SocketAddress.v6(host: "::1", port: 8001).description == "[::1]:8001")
        #expect(SocketAddress.unix(path: "/run/p.sock").description == "/run/p.sock")
        #expect(SocketAddress.v6(host: "::1", port: 1).ipString == "::1")
        #expect(SocketAddress.v4(host: "127.0.0.1", port: 1).ipString == "127.0.0.1")
        #expect(SocketAddress.unix(path: "/x").ipString == nil)
    }
}
}

final class TimerBox: @unchecked Sendable {
    var timer: LoopTimer?
}
