import Dispatch
import Glibc

/// Gives free heap memory back to the kernel while proxyd has no client connection. glibc keeps the pages of freed
/// memory for reuse, so after a burst (a thousand watches, a large list) the resident size would stay at its peak
/// for good; `malloc_trim(0)` releases them. Checked every `interval` on a utility queue, never on an event loop;
/// an idle process trims almost nothing, so the repeated call costs next to nothing.
///
/// Owns one timer source; `stop()` cancels it. Thread-safe: the timer's state lives in the Dispatch source.
final class IdleHeapTrimmer: @unchecked Sendable {
    private typealias MallocTrim = @convention(c) (Int) -> Int32

    /// glibc's `malloc_trim`, which the Glibc module does not import (it is in `malloc.h`); nil with another libc.
    private static let mallocTrim: MallocTrim? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: MallocTrim.self)
    }()

    private let timer: any DispatchSourceTimer

    /// Whether the C library has `malloc_trim` (glibc does).
    static var isAvailable: Bool { mallocTrim != nil }

    /// - Parameters:
    ///   - interval: how often to check.
    ///   - isIdle: whether proxyd has no client connection right now (called on the utility queue).
    init(interval: Duration = .seconds(30), isIdle: @escaping @Sendable () -> Bool) {
        let interval = DispatchTimeInterval.nanoseconds(
            Int(interval.components.seconds) * 1_000_000_000 + Int(interval.components.attoseconds / 1_000_000_000))
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .seconds(1))
        timer.setEventHandler {
            if isIdle() { _ = IdleHeapTrimmer.mallocTrim?(0) }
        }
        timer.activate()
    }

    /// Stops checking. Idempotent.
    func stop() {
        timer.cancel()
    }

    deinit {
        timer.cancel()
    }
}
