public import Dispatch
import Synchronization

/// One serial `DispatchQueue` plus the Dispatch sources registered on it.
///
/// Everything belonging to a connection (its fd, sources, timers, parser, sessions) is confined to one loop.
/// The class itself is immutable and may be shared across threads (`@unchecked Sendable`); the only mutable
/// state, a scratch read buffer, is touched only on `queue`.
public final class EventLoop: @unchecked Sendable {
    /// The serial queue all work of this loop runs on.
    public let queue: DispatchQueue
    private let key = DispatchSpecificKey<UInt8>()
    /// The read buffer lent to each read of this loop's connections, kept for the next read when nobody kept a
    /// slice of it. Only touched on `queue`.
    private var readBuffer = ByteBuffer()
    /// Likewise the buffer TLS decrypts into, for all upstream connections of this loop. Only touched on `queue`.
    private var plaintextBuffer = ByteBuffer()
    /// Work to run when the current turn ends (`atEndOfTurn`), how deep in `turn` calls the loop is, and whether a
    /// block was queued to run the work of calls made outside any turn. Only touched on `queue`.
    private var endOfTurnWork: [any EndOfTurnWork] = []
    private var turnDepth = 0
    private var endOfTurnBlockQueued = false

    /// Size of one read burst and of the largest slice handed to `connection(_:didRead:)`.
    static let readBufferSize = 64 * 1024

    /// - Parameter label: the queue label, e.g. `"proxyd.loop.0"`.
    public init(label: String) {
        queue = DispatchQueue(label: label)
        queue.setSpecific(key: key, value: 1)
    }

    /// Runs `work` asynchronously on the loop's queue, after the work already queued.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        queue.async(execute: work)
    }

    /// Whether the caller runs on this loop's queue.
    public var inLoop: Bool { DispatchQueue.getSpecific(key: key) != nil }

    /// Traps (debug builds only) unless called on this loop's queue.
    @inline(__always)
    public func assertInLoop() {
        #if DEBUG
        dispatchPrecondition(condition: .onQueue(queue))
        #endif
    }

    /// Runs `body` as one turn of the loop (a socket event's handler): work registered with `atEndOfTurn` meanwhile
    /// runs right after `body`, on this thread. Must be called on the loop; nested calls make one turn.
    @inline(__always)
    func turn(_ body: () -> Void) {
        turnDepth += 1
        body()
        turnDepth -= 1
        if turnDepth == 0 && !endOfTurnWork.isEmpty { runEndOfTurnWork() }
    }

    /// Runs `work.endOfTurn()` once the current turn's handler has returned: how a connection gathers everything it
    /// writes in a turn into one system call. Unlike `execute`, it costs no block and no hop through the queue
    /// (measured: a queued block per request adds about 0.2 context switches per request in Dispatch). Outside a
    /// turn (a timer or a queued block) it falls back to one queued block for all such work. Must be called on the
    /// loop; `work` is kept until then.
    func atEndOfTurn(_ work: any EndOfTurnWork) {
        endOfTurnWork.append(work)
        guard turnDepth == 0, !endOfTurnBlockQueued else { return }
        endOfTurnBlockQueued = true
        queue.async { [self] in
            endOfTurnBlockQueued = false
            runEndOfTurnWork()
        }
    }

    private func runEndOfTurnWork() {
        turnDepth += 1          // work added by work runs in this same pass
        var index = 0
        while index < endOfTurnWork.count {
            let work = endOfTurnWork[index]
            index += 1
            work.endOfTurn()
        }
        endOfTurnWork.removeAll(keepingCapacity: true)
        turnDepth -= 1
    }

    /// Schedules `handler` once on the loop's queue after `after`.
    /// - Returns: a `LoopTimer`; `cancel()` it (from the loop) to guarantee the handler does not run.
    ///   Dropping the returned timer does not cancel it.
    public func scheduleTimer(after: Duration, _ handler: @escaping @Sendable () -> Void) -> LoopTimer {
        LoopTimer(queue: queue, after: after, handler: handler)
    }

    /// Lends a buffer with `readBufferSize` bytes of room for one read. Must be called on the loop. Give it back
    /// with `recycleReadBuffer` after the bytes were handed on.
    func takeReadBuffer() -> ByteBuffer {
        var buffer = ByteBuffer()
        swap(&buffer, &readBuffer)          // re-entrancy safe: a nested take gets a fresh buffer
        buffer.reserveWritableBytes(EventLoop.readBufferSize)
        return buffer
    }

    /// Keeps `buffer`'s storage for the next read if no slice of it was kept by whoever got the bytes; otherwise
    /// the slices own it and the next read allocates afresh.
    func recycleReadBuffer(_ buffer: inout ByteBuffer) {
        guard buffer.holdsStorageAlone(), buffer.storageCapacity >= EventLoop.readBufferSize else { return }
        buffer.clear()
        swap(&buffer, &readBuffer)
    }

    /// Lends the buffer TLS decrypts a read into (empty; its storage is the last one given back, if any). One per
    /// loop rather than per upstream connection: an idle connection (one carrying watches) then keeps none. Must be
    /// called on the loop; give it back with `recyclePlaintextBuffer`.
    func takePlaintextBuffer() -> ByteBuffer {
        var buffer = ByteBuffer()
        swap(&buffer, &plaintextBuffer)     // re-entrancy safe: a nested take gets a fresh buffer
        buffer.clear()
        return buffer
    }

    /// Keeps `buffer`'s storage for the next decryption if nobody kept a slice of it.
    func recyclePlaintextBuffer(_ buffer: inout ByteBuffer) {
        guard buffer.holdsStorageAlone() else { return }
        swap(&buffer, &plaintextBuffer)
    }
}

/// A one-shot timer on a loop's queue, backed by a `DispatchSourceTimer` that is never suspended.
///
/// `cancel()` is safe from any thread, any number of times, also after the timer fired. Called on the loop it
/// guarantees that the handler will not run any more. Thread-safe: all state lives in the Dispatch source.
public final class LoopTimer: @unchecked Sendable {
    private let source: any DispatchSourceTimer

    init(queue: DispatchQueue, after: Duration, handler: @escaping @Sendable () -> Void) {
        let source = DispatchSource.makeTimerSource(queue: queue)
        let nanoseconds = max(0, after.components.seconds) * 1_000_000_000
            + max(0, after.components.attoseconds / 1_000_000_000)
        source.schedule(deadline: .now() + .nanoseconds(Int(clamping: nanoseconds)), repeating: .never)
        let box = SourceBox(source)
        source.setEventHandler {
            // Cancelling after the single firing unregisters the timer and releases this handler (and the box).
            box.source.cancel()
            handler()
        }
        self.source = source
        source.activate()
    }

    /// Cancels the timer. Idempotent; harmless after it fired.
    public func cancel() {
        source.cancel()
    }

    /// Whether the timer was cancelled (or fired).
    public var isCancelled: Bool { source.isCancelled }
}

/// Something with work to do at the end of a loop turn (`EventLoop.atEndOfTurn`).
protocol EndOfTurnWork: AnyObject {
    func endOfTurn()
}

/// Lets a `@Sendable` handler refer to its own source. Dispatch sources are thread-safe.
private final class SourceBox: @unchecked Sendable {
    let source: any DispatchSourceTimer
    init(_ source: any DispatchSourceTimer) { self.source = source }
}

/// A fixed set of event loops, handed out round-robin. Thread-safe (the counter is atomic).
public final class EventLoopGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private let counter = Atomic<Int>(0)

    /// - Parameters:
    ///   - count: number of loops (at least 1); typically one per core.
    ///   - label: the loops' queue labels are `label.0`, `label.1`, …
    public init(count: Int, label: String = "proxyd.loop") {
        precondition(count > 0, "EventLoopGroup needs at least one loop")
        loops = (0..<count).map { EventLoop(label: "\(label).\($0)") }
    }

    /// The next loop, round-robin.
    public func next() -> EventLoop {
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return loops[(n % loops.count + loops.count) % loops.count]
    }
}
