/// How long an unhealthy apiserver is left alone before it is tried again: `initial` after the first failure,
/// doubling with each further one up to `maximum`, with "equal jitter" (a uniformly random point in the upper half
/// of the step) so that loops and proxies do not retry in lockstep.
///
/// While requests wait for a server (none is healthy), the step is capped at `whileWaiting`, so that they see a
/// server that comes back within their wait bound.
public struct HealthBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var whileWaiting: Duration

    public init(initial: Duration = .milliseconds(250), maximum: Duration = .seconds(10),
                whileWaiting: Duration = .seconds(1)) {
        self.initial = initial
        self.maximum = maximum
        self.whileWaiting = whileWaiting
    }

    /// The pause, in nanoseconds, after `failures` (≥ 1) consecutive failures.
    /// - Parameters:
    ///   - jitter: 0...1, where within the upper half of the step the pause ends.
    ///   - waiting: requests are waiting for a server.
    func delay(failures: Int, jitter: Double, waiting: Bool) -> UInt64 {
        var cap = maximum.nanoseconds
        if waiting { cap = min(cap, whileWaiting.nanoseconds) }
        var step = min(initial.nanoseconds, cap)
        var doublings = failures - 1
        while doublings > 0 && step < cap {
            step = min(step * 2, cap)
            doublings -= 1
        }
        let half = step / 2
        return step - half + UInt64(Double(half) * min(max(jitter, 0), 1))
    }
}

extension Duration {
    /// Whole nanoseconds, at least 0.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }
}

/// What proxyd learned about an apiserver.
enum HealthEvidence: Equatable {
    /// A connection to it was set up (TCP, TLS, protocol).
    case connected
    /// `GET /readyz` answered 200.
    case ready
    /// A connect or TLS failure, a PING without answer, or a failed `/readyz`.
    case failed(String)
    /// A GOAWAY on a connection with streams: the server is shutting down or shedding load. Counts as a failure.
    case goingAway
}

/// The health of one apiserver: a value, driven by evidence and a clock the caller passes in (uptime nanoseconds),
/// so tests can fake both.
///
///     healthy ──failure──▶ unhealthy ──probe due──▶ probing ──failure──▶ unhealthy (next step of the backoff)
///        ▲                                             │
///        └──────────── connected / ready ◀─────────────┘   (any time while not healthy)
///
/// With active checks (`--apiserver-readyz-interval`), only a passing `/readyz` brings a server back: a connection
/// that can be set up says nothing about an apiserver that answers `/readyz` with 500.
struct ServerHealth: Equatable {
    enum Status: Equatable {
        case healthy
        /// Not used for new requests; tried again at `nextProbe`.
        case unhealthy
        /// A probe (a connection, or `/readyz`) is under way.
        case probing
    }

    /// A probe that has not reported after this long (connect and TLS timeouts are 30 s and 10 s) is due again.
    static let probeTimeout: UInt64 = 60_000_000_000

    private(set) var status: Status = .healthy
    /// Consecutive failed attempts since the server was last healthy.
    private(set) var failures = 0
    /// When the last failure was recorded; the next probe is a backoff step after it.
    private(set) var failedAt: UInt64 = 0
    private(set) var probeStartedAt: UInt64 = 0
    private(set) var jitter: Double = 1
    /// Why it became (or stayed) unhealthy, for logs.
    private(set) var reason: String?

    var isHealthy: Bool { status == .healthy }

    /// Applies evidence seen at `now`.
    /// - Parameters:
    ///   - jitter: 0...1, drawn by the caller, used for the backoff step that a failure starts.
    ///   - activeChecks: only `/readyz` may make a server healthy again.
    /// - Returns: whether `isHealthy` changed.
    mutating func record(_ evidence: HealthEvidence, now: UInt64, jitter: Double, activeChecks: Bool) -> Bool {
        switch evidence {
        case .connected, .ready:
            guard status != .healthy else { return false }
            if evidence == .connected && activeChecks { return false }
            status = .healthy
            failures = 0
            reason = nil
            return true
        case .failed, .goingAway:
            if case .failed(let why) = evidence { reason = why } else { reason = "it sent GOAWAY" }
            switch status {
            case .healthy:
                status = .unhealthy
                failures = 1
                failedAt = now
                self.jitter = jitter
                return true
            case .probing:
                status = .unhealthy
                failures += 1
                failedAt = now
                self.jitter = jitter
                return false
            case .unhealthy:
                // Another connection failing for the same reason (several loops, several connections): the attempt
                // that set the current step already counted.
                return false
            }
        }
    }

    /// When the next probe is due, or nil while healthy.
    func nextProbe(_ backoff: HealthBackoff, waiting: Bool) -> UInt64? {
        switch status {
        case .healthy: return nil
        case .unhealthy: return failedAt + backoff.delay(failures: failures, jitter: jitter, waiting: waiting)
        case .probing: return probeStartedAt + Self.probeTimeout
        }
    }

    /// Starts a probe if one is due at `now`; returns whether the caller should run it.
    mutating func startProbeIfDue(_ backoff: HealthBackoff, waiting: Bool, now: UInt64) -> Bool {
        guard let due = nextProbe(backoff, waiting: waiting), due <= now else { return false }
        status = .probing
        probeStartedAt = now
        return true
    }
}
