import Dispatch

/// The counters of one event loop. Confined to its loop like everything else there: plain integers, no atomics
/// and no locks on the data path. A scrape runs `snapshot` on every loop and adds the snapshots up
/// (`MetricsSnapshot.add`), so the totals are exact and no request ever waits for a scrape.
final class LoopMetrics {
    /// The counters other than requests and latencies (those are kept below, in a form cheaper to update).
    var values = MetricsSnapshot()

    /// Health facts this loop learned from its upstream traffic (not exported as metrics; `/readyz` reads them).
    var health = LoopHealth()

    /// Requests and latencies, updated once per request in one access to one stored property (each access to a
    /// class's stored property costs a dynamic exclusivity check).
    private var requestCounters = RequestCounters()

    /// Several apiservers: each server's counters, by URL, so that a reload that keeps a server keeps counting on
    /// the same object (a balancer's slot and its pool hold it; no lookup per request).
    private var servers: [String: ServerCounters] = [:]

    /// The counters of the apiserver at `url` on this loop.
    func counters(forServer url: String) -> ServerCounters {
        if let counters = servers[url] { return counters }
        let counters = ServerCounters()
        servers[url] = counters
        return counters
    }

    // MARK: requests

    /// A request head was parsed and an exchange started.
    @inline(__always)
    func requestStarted() {
        requestCounters.inFlight += 1
    }

    /// An exchange ended (answered, failed, or cancelled by the client).
    /// - Parameters:
    ///   - status: the status sent to the client, 0 when the client left before any was sent.
    ///   - nanos: time from the request head to the end of the response.
    ///   - timed: whether it goes into the latency histogram (not long-running, not cancelled).
    func requestEnded(method: Int, status: Int, nanos: UInt64, timed: Bool) {
        requestCounters.record(method: method, status: status, nanos: nanos, timed: timed)
    }

    /// All of this loop's counters as one value (taken on the loop).
    func snapshot() -> MetricsSnapshot {
        var snapshot = values
        let requests = requestCounters
        snapshot.requestsInFlight = requests.inFlight
        for (key, count) in requests.counts { snapshot.requests[key] = count }
        for (method, histogram) in requests.histograms.enumerated() {
            if let histogram { snapshot.durations[method] = histogram }
        }
        for (url, counters) in servers { snapshot.servers[url] = counters.values }
        return snapshot
    }
}

/// The per-request counters of a loop.
struct RequestCounters {
    var inFlight = 0
    /// Finished requests by `method index * 1000 + status`: a short list searched linearly (a few distinct pairs
    /// in practice), cheaper per request than hashing.
    var counts: [(key: Int, count: Int)] = []
    /// Latency by method index.
    var histograms = [Histogram?](repeating: nil, count: MethodLabel.names.count)

    mutating func record(method: Int, status: Int, nanos: UInt64, timed: Bool) {
        inFlight -= 1
        let key = method * 1000 + status
        if let index = counts.firstIndex(where: { $0.key == key }) {
            counts[index].count += 1
        } else {
            counts.append((key, 1))
        }
        guard timed else { return }
        if histograms[method] == nil { histograms[method] = Histogram() }
        histograms[method]!.observe(nanos: nanos)
    }
}

/// One latency histogram: observations per bucket of `LatencyBuckets` (not cumulative; the last is `+Inf`).
struct Histogram: Sendable, Equatable {
    var counts = [Int](repeating: 0, count: LatencyBuckets.bounds.count + 1)
    var sumNanos: UInt64 = 0

    mutating func observe(nanos: UInt64) {
        counts[LatencyBuckets.index(nanos: nanos)] += 1
        sumNanos &+= nanos
    }

    mutating func add(_ other: Histogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        sumNanos &+= other.sumNanos
    }

    var count: Int { counts.reduce(0, +) }
}

/// Upstream connections of a loop, by protocol and state, counted when a snapshot is taken.
struct UpstreamConnectionCounts: Sendable, Equatable {
    enum State: Int, CaseIterable {
        /// Carrying at least one exchange.
        case active
        /// Open, carrying nothing.
        case idle
        /// Taking no new exchanges (GOAWAY, a retired configuration or TLS identity); closes after its last one.
        case draining

        var label: String {
            switch self {
            case .active: "active"
            case .idle: "idle"
            case .draining: "draining"
            }
        }
    }

    /// `[protocol index][state index]`, protocol 0 = `h2`, 1 = `http/1.1`.
    var counts = [[Int]](repeating: [Int](repeating: 0, count: State.allCases.count), count: 2)
    /// TCP, proxy or TLS setup in progress (the protocol is known only once ALPN is done).
    var connecting = 0
    /// HTTP/2 streams open.
    var streams = 0

    static let protocols = ["h2", "http/1.1"]

    mutating func add(_ other: UpstreamConnectionCounts) {
        for p in counts.indices {
            for s in counts[p].indices { counts[p][s] += other.counts[p][s] }
        }
        connecting += other.connecting
        streams += other.streams
    }
}

/// Everything `/metrics` shows that the event loops count: one loop's values, or the sum of all loops'.
struct MetricsSnapshot: Sendable, Equatable {
    /// Finished exchanges by `method index * 1000 + status` (status 0: the client left before an answer).
    var requests: [Int: Int] = [:]
    /// Latency of regular requests, by method index.
    var durations: [Int: Histogram] = [:]
    /// Requests the parser refused (400, 408, 413, 414, 431, 501, 505), by status.
    var malformedRequests: [Int: Int] = [:]
    var requestsInFlight = 0
    var watches = 0
    var upgradeTunnels = 0
    var clientConnectionsAccepted = 0
    /// Filled in when the snapshot is taken.
    var clientConnections = 0
    var requestBodyBytes = 0
    var responseBodyBytes = 0
    var tunnelBytesToUpstream = 0
    var tunnelBytesToClient = 0
    var filterRejections = [Int](repeating: 0, count: FilterRule.allCases.count)
    var upstreamErrors = [Int](repeating: 0, count: UpstreamErrorKind.allCases.count)
    /// Upstream connections set up (TCP and TLS done), by protocol index (0 `h2`, 1 `http/1.1`).
    var upstreamConnectionsOpened = [0, 0]
    /// Filled in when the snapshot is taken.
    var upstreamConnections = UpstreamConnectionCounts()
    /// Several apiservers: each server's counters, by URL (empty with one server).
    var servers: [String: ServerCounterValues] = [:]

    mutating func add(_ other: MetricsSnapshot) {
        requests.merge(other.requests, uniquingKeysWith: +)
        for (method, histogram) in other.durations { durations[method, default: Histogram()].add(histogram) }
        malformedRequests.merge(other.malformedRequests, uniquingKeysWith: +)
        requestsInFlight += other.requestsInFlight
        watches += other.watches
        upgradeTunnels += other.upgradeTunnels
        clientConnectionsAccepted += other.clientConnectionsAccepted
        clientConnections += other.clientConnections
        requestBodyBytes += other.requestBodyBytes
        responseBodyBytes += other.responseBodyBytes
        tunnelBytesToUpstream += other.tunnelBytesToUpstream
        tunnelBytesToClient += other.tunnelBytesToClient
        for index in filterRejections.indices { filterRejections[index] += other.filterRejections[index] }
        for index in upstreamErrors.indices { upstreamErrors[index] += other.upstreamErrors[index] }
        for index in upstreamConnectionsOpened.indices {
            upstreamConnectionsOpened[index] += other.upstreamConnectionsOpened[index]
        }
        upstreamConnections.add(other.upstreamConnections)
        for (url, values) in other.servers { servers[url, default: ServerCounterValues()].add(values) }
    }
}

/// One apiserver's counters on one loop (several apiservers only; `LoopMetrics.counters(forServer:)`).
final class ServerCounters {
    var values = ServerCounterValues()
    /// A connection to the server was set up on this loop at least once (for `/readyz`; kept across reloads, so a
    /// reload that keeps the server does not make it look unreachable until it is connected again).
    var answered = false
}

/// What is counted per apiserver (`proxyd_apiserver_*`, docs/metrics.md).
struct ServerCounterValues: Sendable, Equatable {
    /// Exchanges and upgrade tunnels sent to the server, each attempt counted (a request sent again after a
    /// failure counts on both servers); proxyd's own requests (discovery, `/readyz` checks) included.
    var requests = 0
    /// Attempts that failed on the server (connection refused or lost, stream refused, PING unanswered), whether
    /// they were then sent to another server or not.
    var failures = 0
    /// Connections to the server that failed, by `UpstreamErrorKind`.
    var connectionErrors = [Int](repeating: 0, count: UpstreamErrorKind.allCases.count)

    mutating func add(_ other: ServerCounterValues) {
        requests += other.requests
        failures += other.failures
        for index in connectionErrors.indices { connectionErrors[index] += other.connectionErrors[index] }
    }
}

/// What one loop learned about the apiserver and the credentials from the traffic it carried anyway; `/readyz`
/// reads it (with the loop's upstream connections) instead of sending requests of its own. Times are uptime
/// nanoseconds, 0 for never.
struct LoopHealth: Sendable, Equatable {
    /// The last finished handshake or HTTP/1.1 response on a connection of the current configuration (HTTP/2
    /// frames are read from the connections themselves when a probe asks).
    var lastUpstreamSuccess: UInt64 = 0
    /// The last failed connection attempt, or connection lost to an error, and why.
    var lastUpstreamFailure: UInt64 = 0
    var lastUpstreamFailureReason = ""
    /// The credential revision the two times below are about (a new credential starts with a clean slate).
    var authRevision: UInt64 = 0
    /// The last 401 to a request sent with the configured credentials.
    var lastAuthRejected: UInt64 = 0
    /// The last answer other than 401 to such a request.
    var lastAuthAccepted: UInt64 = 0
    /// Several apiservers: the URLs of the servers that answered this loop's pools (`ServerCounters.answered`).
    var answeredServers: [String] = []

    mutating func recordUpstreamSuccess(now: UInt64) {
        lastUpstreamSuccess = max(lastUpstreamSuccess, now)
    }

    mutating func recordUpstreamFailure(_ reason: String, now: UInt64) {
        lastUpstreamFailure = now
        lastUpstreamFailureReason = reason
    }

    /// An answer to a request that carried the configured credentials of `revision`.
    mutating func recordAuth(status: Int, revision: UInt64, now: UInt64) {
        if revision != authRevision {
            guard revision > authRevision else { return }  // an old credential's late answer
            authRevision = revision
            lastAuthRejected = 0
            lastAuthAccepted = 0
        }
        if status == 401 { lastAuthRejected = now } else { lastAuthAccepted = now }
    }
}
