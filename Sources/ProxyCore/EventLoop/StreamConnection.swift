import Dispatch
import Glibc

/// Receives the events of a `StreamConnection`, always on the connection's loop.
///
/// No delegate method is ever called from inside a public method of `StreamConnection` (`write`, `close`, …):
/// events come from Dispatch source handlers or from work queued on the loop, so a delegate may call back into the
/// connection freely.
public protocol StreamConnectionDelegate: AnyObject {
    /// Bytes read from the socket; at most 64 KiB per call. The delegate may keep the buffer or slices of it (they
    /// share its storage; the next read then gets a new buffer) or let it go (the next read reuses it).
    func connection(_ c: StreamConnection, didRead bytes: ByteBuffer)
    /// The peer half-closed: the read side is stopped for good (no more `didRead`). Writing still works.
    func connectionDidReadEOF(_ c: StreamConnection)
    /// The bytes that had to wait for the socket to become writable have all been handed to the kernel.
    /// Not called when `write(_:)` could write everything at once (then `bufferedWriteBytes` is 0 on return).
    func connectionDidDrainWrites(_ c: StreamConnection)
    /// A read/write error (e.g. `ECONNRESET`, `EPIPE`). `close()` follows right after.
    func connection(_ c: StreamConnection, didFail error: IOError)
    /// The fd has been closed. Called exactly once per connection (also when it never started).
    func connectionDidClose(_ c: StreamConnection)
}

/// Why reading is paused: reading resumes only when no reason is left (NIO IOControl-style reason bits).
public struct ReadPauseReasons: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// `pauseReading()` / `resumeReading()`.
    public static let manual = ReadPauseReasons(rawValue: 1 << 0)
    /// The consumer of what we read is over its high watermark.
    public static let backpressure = ReadPauseReasons(rawValue: 1 << 1)
    /// Protocol state (e.g. waiting for an upstream connection, or for a response before reading the next request).
    public static let protocolState = ReadPauseReasons(rawValue: 1 << 2)
}

/// A non-blocking stream socket (TCP or unix) driven by one read `DispatchSource`, created in `start()`, and one
/// write `DispatchSource`, created the first time a write has to wait for the socket.
///
/// Confined to `loop`: every method except `init` must be called on `loop.queue` (asserted in debug builds); that
/// is why it is `@unchecked Sendable` and needs no locks.
///
/// Ownership and lifetime:
/// - The connection owns `fd` from `init` on and closes it exactly once, in the cancel handler of whichever of its
///   sources is cancelled last (or directly if it was never started).
/// - Once started, the sources' handlers retain the connection until it is closed, like a registered channel:
///   the owner must eventually call `close()` (errors close it automatically; EOF does not, to allow half-close).
/// - The connection retains its `delegate` until it has closed (it lets go of it just before `connectionDidClose`):
///   a delegate that owns the connection is kept alive exactly as long as the connection, without a weak reference
///   (which would give every delegate a side table: memory per connection that thousands of idle watches add up).
///
/// Source rules (STYLE.md §4): the read source runs unless paused or at EOF; the write source runs only while the
/// write queue is non-empty and the socket said `EAGAIN`. `Bool`s record each source's state so suspend/resume
/// always pair up, and `close()` resumes (or activates) each before cancelling it.
public final class StreamConnection: @unchecked Sendable {
    /// The loop this connection is confined to.
    public let loop: EventLoop
    /// The socket. Owned by the connection; valid until `connectionDidClose`.
    let fd: Int32
    /// Strong until the connection has closed (see the type's notes); set before `start()`.
    public var delegate: (any StreamConnectionDelegate)?

    private enum CloseState { case open, closing, closed }

    // The sources as their class, not as the protocol existentials `makeReadSource`/`makeWriteSource` return
    // (`DispatchSourceRead` is not class-bound: 40 bytes each), and the flags next to each other: this object lives
    // as long as its connection (hours for a watch), thousands at a time.
    private var readSource: DispatchSource?
    private var writeSource: DispatchSource?
    private var writeQueue = WriteQueue()
    private var pendingCancelHandlers = 0
    private var closeState = CloseState.open
    private var started = false
    private var fdClosed = false
    private var inSourceHandler = false      // one of this connection's source handlers runs (`sourceEvent`)

    private var readActivated = false
    private var readRunning = false          // activated and not suspended
    private var readPauseReasons = ReadPauseReasons()   // the source is suspended while any reason is set
    private var readEOF = false

    private var writeActivated = false
    private var writeRunning = false         // activated and not suspended
    private var shutdownRequested = false
    private var writeShutDown = false
    private var writeBroken = false          // a write failed; the failure is being delivered

    /// At most this many `read` calls per readable event (bounded bursts, like NIO's spin count).
    static let maxReadsPerEvent = 4
    /// At most this many `send` calls per flush before yielding back to the loop.
    static let maxWritesPerFlush = 64

    // Counters for tests and diagnostics; loop-confined.
    private(set) var readEventCount = 0
    private(set) var writeEventCount = 0
    private(set) var wouldBlockWriteCount = 0
    var hasWriteSource: Bool { writeSource != nil }

    /// - Parameters:
    ///   - fd: a connected stream socket, already `O_NONBLOCK`. Ownership passes to the connection.
    ///   - loop: the loop everything about this connection runs on.
    /// May be called off the loop (e.g. in a `Listener` accept callback).
    public init(fd: Int32, loop: EventLoop) {
        precondition(fd >= 0, "StreamConnection needs a valid fd")
        self.fd = fd
        self.loop = loop
    }

    deinit {
        // Only reachable without close() if the connection never started: no source watches the fd.
        if !fdClosed { try? Posix.close(fd: fd) }
    }

    /// Bytes queued by `write(_:)` and not yet handed to the kernel.
    public var bufferedWriteBytes: Int { writeQueue.count }

    /// Whether queued bytes wait for the socket to become writable (a write said `EAGAIN`; the drain is reported by
    /// `connectionDidDrainWrites`).
    public var isWaitingToWrite: Bool { writeRunning }

    /// Bytes written to the socket that the kernel has not sent (or had acknowledged) yet. One `ioctl`.
    public var kernelUnsentBytes: Int { closeState == .open ? Posix.unsentBytes(fd: fd) : 0 }

    /// True once `close()` was called or a failure closed the connection.
    public var isClosed: Bool { closeState != .open }

    /// Creates the two sources and activates the read source (unless `pauseReading()` was called before).
    /// Call on the loop after setting `delegate`. Bytes written before `start()` are flushed now.
    public func start() {
        loop.assertInLoop()
        guard !started, closeState == .open else { return }
        started = true
        let read = Self.concrete(DispatchSource.makeReadSource(fileDescriptor: fd, queue: loop.queue))
        // Strong captures on purpose: an open connection stays alive until closed. libdispatch releases the
        // handlers once a source's cancellation completes, and `sourceCancelled` drops the sources: no cycle left.
        // The cancel handler is set only in `close()` (see `cancel(_:)`).
        read.setEventHandler { self.sourceEvent { self.readable() } }
        readSource = read
        pendingCancelHandlers = 1
        updateReadSource()
        if !writeQueue.isEmpty {
            flush(inEvent: false)
        } else if shutdownRequested {
            shutdownNow(inEvent: false)
        }
    }

    // MARK: reading

    /// Stops reading (suspends the read source). Idempotent. Same as `pauseReading(for: .manual)`.
    public func pauseReading() {
        pauseReading(for: .manual)
    }

    /// Resumes reading after `pauseReading()`. Idempotent; no effect after EOF or close, nor while another
    /// reason (see `pauseReading(for:)`) still holds reading paused.
    public func resumeReading() {
        resumeReading(for: .manual)
    }

    /// Pauses reading for `reasons`; reading resumes only once every reason has been lifted, so two independent
    /// pause reasons (e.g. write backpressure and a full upstream window) never resume each other. Idempotent.
    public func pauseReading(for reasons: ReadPauseReasons) {
        loop.assertInLoop()
        readPauseReasons.formUnion(reasons)
        updateReadSource()
    }

    /// Lifts `reasons` set by `pauseReading(for:)`. Idempotent.
    public func resumeReading(for reasons: ReadPauseReasons) {
        loop.assertInLoop()
        readPauseReasons.subtract(reasons)
        updateReadSource()
    }

    /// The reasons currently holding reading paused (empty while reading).
    public var readingPausedFor: ReadPauseReasons { readPauseReasons }

    private func updateReadSource() {
        guard let source = readSource, closeState == .open else { return }
        let shouldRun = readPauseReasons.isEmpty && !readEOF
        guard shouldRun != readRunning else { return }
        if shouldRun {
            if readActivated { source.resume() } else { source.activate(); readActivated = true }
        } else {
            source.suspend()
        }
        readRunning = shouldRun
    }

    /// One event of one of the sources: a turn of the loop (work registered with `atEndOfTurn` runs at its end,
    /// still inside the source's handler as far as libdispatch is concerned, see `cancel(_:)`).
    private func sourceEvent(_ body: () -> Void) {
        inSourceHandler = true
        loop.turn(body)
        inSourceHandler = false
    }

    private func readable() {
        guard closeState == .open, readRunning else { return }
        readEventCount += 1
        var buffer = loop.takeReadBuffer()
        defer { loop.recycleReadBuffer(&buffer) }
        for _ in 0..<StreamConnection.maxReadsPerEvent {
            guard closeState == .open, readRunning else { return }
            var result = IOResult<Int>.wouldBlock
            var shortRead = false
            do {
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: EventLoop.readBufferSize) {
                    raw throws(IOError) in
                    result = try Posix.read(fd: fd, into: raw)
                    guard case .processed(let n) = result else { return 0 }
                    shortRead = n < raw.count
                    return n
                }
            } catch {
                fail(error)
                return
            }
            switch result {
            case .wouldBlock:
                return
            case .processed(0):
                // EOF is checked before any errno: stop the level-triggered source or it would spin.
                readEOF = true
                updateReadSource()
                delegate?.connectionDidReadEOF(self)
                return
            case .processed:
                delegate?.connection(self, didRead: buffer)
                if shortRead { return }      // the socket is (very likely) drained
                loop.recycleReadBuffer(&buffer)
                buffer = loop.takeReadBuffer()
            }
        }
    }

    // MARK: writing

    /// Queues `bytes` and writes as much as the socket takes right now; the rest goes out when the socket becomes
    /// writable. Ignored after `shutdownWrite()`, after a write failure and after `close()`.
    public func write(_ bytes: ByteBuffer) {
        enqueue(bytes)
        flushQueued()
    }

    /// Copies `bytes` into a buffer and writes it (small heads and messages).
    public func write(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        write(ByteBuffer(bytes: bytes))
    }

    /// Queues `bytes` without writing yet: several queued buffers go out together (one `sendmsg`) at the next
    /// `flushQueued()` or `write`. Same conditions as `write`.
    public func enqueue(_ bytes: ByteBuffer) {
        loop.assertInLoop()
        guard closeState == .open, !shutdownRequested, !writeBroken, !bytes.isEmpty else { return }
        if writeRunning {
            // The socket is backed up: a small slice of a large buffer gets storage of its own now, so the large one
            // (a decrypted read shared by many streams) is not kept until this socket's next flush.
            var own = bytes
            own.compactIfWasteful()
            writeQueue.append(own)
        } else {
            writeQueue.append(bytes)
        }
    }

    /// Writes what `enqueue` queued, unless the connection is waiting for the socket to become writable anyway.
    public func flushQueued() {
        loop.assertInLoop()
        if started && !writeRunning && !writeQueue.isEmpty && closeState == .open { flush(inEvent: false) }
    }

    /// Shuts down the sending side (`shutdown(SHUT_WR)`) once all queued bytes are written. Idempotent.
    public func shutdownWrite() {
        loop.assertInLoop()
        guard closeState == .open, !shutdownRequested else { return }
        shutdownRequested = true
        if started && writeQueue.isEmpty && !writeBroken { shutdownNow(inEvent: false) }
    }

    private func writable() {
        guard closeState == .open, writeRunning else { return }
        writeEventCount += 1
        flush(inEvent: true)
    }

    /// Writes from the queue until it is empty, the socket would block, or the burst limit is reached.
    /// - Parameter inEvent: true in a source handler (delegate may be called), false inside a public method
    ///   (failures are delivered asynchronously through the loop).
    private func flush(inEvent: Bool) {
        var rounds = 0
        while !writeQueue.isEmpty && rounds < StreamConnection.maxWritesPerFlush {
            rounds += 1
            let result: IOResult<Int>
            do {
                result = try writeQueue.write(fd: fd)
            } catch {
                writeFailed(error, inEvent: inEvent)
                return
            }
            switch result {
            case .processed(let n):
                writeQueue.consume(n)
            case .wouldBlock:
                wouldBlockWriteCount += 1
                rounds = StreamConnection.maxWritesPerFlush
                writeQueue.compactWasteful()
            }
        }
        if writeQueue.isEmpty {
            let wasWaiting = writeRunning
            setWriteSourceRunning(false)
            if shutdownRequested && !writeShutDown { shutdownNow(inEvent: inEvent) }
            if wasWaiting && closeState == .open { delegate?.connectionDidDrainWrites(self) }
        } else {
            setWriteSourceRunning(true)
        }
    }

    private func setWriteSourceRunning(_ run: Bool) {
        guard started, closeState == .open, run != writeRunning else { return }
        let source = writeSource ?? makeWriteSource()
        if run {
            if writeActivated { source.resume() } else { source.activate(); writeActivated = true }
        } else {
            source.suspend()
        }
        writeRunning = run
    }

    /// The write source is made the first time a write has to wait: most connections (a request, a watch) never
    /// fill their socket, and each source costs memory (the source, its unote and handler blocks) and, when
    /// cancelled, registering and unregistering with epoll.
    private func makeWriteSource() -> DispatchSource {
        let write = Self.concrete(DispatchSource.makeWriteSource(fileDescriptor: fd, queue: loop.queue))
        write.setEventHandler { self.sourceEvent { self.writable() } }
        writeSource = write
        pendingCancelHandlers += 1
        return write
    }

    private func shutdownNow(inEvent: Bool) {
        guard !writeShutDown else { return }
        writeShutDown = true
        do {
            try Posix.shutdown(fd: fd, how: Int32(SHUT_WR))
        } catch where error.errno == ENOTCONN {
            // The peer is already gone; the read side reports it.
        } catch {
            writeFailed(error, inEvent: inEvent)
        }
    }

    private func writeFailed(_ error: IOError, inEvent: Bool) {
        writeBroken = true
        writeQueue.removeAll()
        setWriteSourceRunning(false)
        if inEvent {
            fail(error)
        } else {
            loop.execute { self.fail(error) }
        }
    }

    // MARK: closing

    private func fail(_ error: IOError) {
        guard closeState == .open else { return }
        delegate?.connection(self, didFail: error)
        close()
    }

    /// Closes the connection. Idempotent. Queued bytes are dropped. Resumes any suspended source, cancels both;
    /// the fd is closed in the last cancel handler, then the delegate gets `connectionDidClose` (asynchronously).
    public func close() {
        loop.assertInLoop()
        guard closeState == .open else { return }
        closeState = .closing
        writeQueue.removeAll()
        guard let read = readSource else {
            // Never started: no source watches the fd.
            closeFD()
            loop.execute { self.finishClose() }
            return
        }
        // Never cancel (and later release) a suspended or inactive source.
        if !readActivated { read.activate(); readActivated = true } else if !readRunning { read.resume() }
        readRunning = true
        cancel(read)
        if let write = writeSource {
            if !writeActivated { write.activate(); writeActivated = true } else if !writeRunning { write.resume() }
            writeRunning = true
            cancel(write)
        }
    }

    /// Sets the source's cancel handler, then cancels it. The handler is set this late because a handler costs
    /// memory for as long as it is set (a block and a libdispatch continuation, about 110 bytes per source), and
    /// most connections live far longer than they take to close.
    ///
    /// Setting a handler on an active source is allowed. libdispatch applies it at once, except while the source
    /// itself is busy (one of its handlers runs, or its registration changes): then the change is queued on the
    /// source, and every later pass over the source runs it before anything else, cancellation included. The one
    /// pass that has already passed that point is the one running our own event handler, which would go on to
    /// process a cancel made now without the new cancel handler (the fd would never be closed). So inside our
    /// handlers the cancel waits for the next loop turn; until then the handlers return at once (`closeState`).
    private func cancel(_ source: DispatchSource) {
        source.setCancelHandler { self.sourceCancelled() }
        if inSourceHandler {
            let box = LoopBound(source)
            loop.execute { box.value.cancel() }
        } else {
            source.cancel()
        }
    }

    /// The class every source `DispatchSource.make…Source` returns is (swift-corelibs-libdispatch).
    private static func concrete(_ source: any DispatchSourceProtocol) -> DispatchSource {
        guard let source = source as? DispatchSource else { preconditionFailure("a Dispatch source of another class") }
        return source
    }

    private func sourceCancelled() {
        pendingCancelHandlers -= 1
        guard pendingCancelHandlers == 0 else { return }
        closeFD()
        readSource = nil
        writeSource = nil
        finishClose()
    }

    private func closeFD() {
        guard !fdClosed else { return }
        fdClosed = true
        try? Posix.close(fd: fd)
    }

    private func finishClose() {
        guard closeState != .closed else { return }
        closeState = .closed
        let delegate = self.delegate
        self.delegate = nil
        delegate?.connectionDidClose(self)
    }
}
