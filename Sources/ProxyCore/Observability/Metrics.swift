import Synchronization

/// Process-wide request counters. Updated once per finished request (not per byte) with relaxed atomics.
public final class ProxyMetrics: Sendable {
    private let requests = Atomic<Int>(0)
    private let cancelled = Atomic<Int>(0)
    private let status2xx = Atomic<Int>(0)
    private let status4xx = Atomic<Int>(0)
    private let status5xx = Atomic<Int>(0)
    private let responseBytes = Atomic<Int>(0)
    private let totalMicros = Atomic<Int>(0)

    public init() {}

    func record(status: Int, bytes: Int, micros: UInt64, cancelled wasCancelled: Bool) {
        requests.add(1, ordering: .relaxed)
        if wasCancelled { cancelled.add(1, ordering: .relaxed) }
        switch status {
        case 200..<300: status2xx.add(1, ordering: .relaxed)
        case 400..<500: status4xx.add(1, ordering: .relaxed)
        case 500..<600: status5xx.add(1, ordering: .relaxed)
        default: break
        }
        responseBytes.add(bytes, ordering: .relaxed)
        totalMicros.add(Int(micros), ordering: .relaxed)
    }

    public struct Snapshot: Sendable, Equatable {
        public var requests: Int
        public var cancelled: Int
        public var status2xx: Int
        public var status4xx: Int
        public var status5xx: Int
        public var responseBytes: Int
        public var totalMicros: Int
    }

    public var snapshot: Snapshot {
        Snapshot(
            requests: requests.load(ordering: .relaxed), cancelled: cancelled.load(ordering: .relaxed),
            status2xx: status2xx.load(ordering: .relaxed), status4xx: status4xx.load(ordering: .relaxed),
            status5xx: status5xx.load(ordering: .relaxed), responseBytes: responseBytes.load(ordering: .relaxed),
            totalMicros: totalMicros.load(ordering: .relaxed))
    }
}
