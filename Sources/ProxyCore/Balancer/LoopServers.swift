/// Where a loop's requests go: the one apiserver's pool (exactly as without failover), or the balancer over several.
enum LoopServers {
    case single(UpstreamPool)
    case balanced(LoopBalancer)

    /// Starts an exchange; events reach `handler` on this loop.
    func start(_ request: UpstreamRequest, handler: any UpstreamResponseHandler) -> UpstreamStream {
        switch self {
        case .single(let pool): return pool.start(request, handler: handler)
        case .balanced(let balancer): return balancer.start(request, handler: handler)
        }
    }

    /// An upgrade tunnel's way to a server: nil with one server (the tunnel dials the cluster's server).
    func tunnelRoute() -> TunnelRoute? {
        switch self {
        case .single: return nil
        case .balanced(let balancer): return TunnelRoute(balancer: balancer)
        }
    }

    func retireConnections() {
        switch self {
        case .single(let pool): pool.retireConnections()
        case .balanced(let balancer): balancer.retireConnections()
        }
    }

    func shutdown() {
        switch self {
        case .single(let pool): pool.shutdown()
        case .balanced(let balancer): balancer.shutdown()
        }
    }

    /// The configuration version was replaced: every pool drains; `onDrained` runs on the loop once all are empty.
    func retire(onDrained: @escaping () -> Void) {
        switch self {
        case .single(let pool): pool.retire(onDrained: onDrained)
        case .balanced(let balancer): balancer.retire(onDrained: onDrained)
        }
    }

    /// The readiness monitor's turn (first loop): PING or connect to the server, or to each healthy one.
    func probe(idle: Duration) {
        switch self {
        case .single(let pool): pool.probe(idle: idle)
        case .balanced(let balancer): balancer.monitor(idle: idle, pingTimeout: HealthPolicy.monitorPingTimeout)
        }
    }

    /// Adds the connections to `counts`; with one server, returns when it last sent an HTTP/2 frame (for
    /// `/readyz`; 0 with several, whose readiness is the balancer's health).
    func count(into counts: inout UpstreamConnectionCounts) -> UInt64 {
        switch self {
        case .single(let pool):
            return pool.count(into: &counts)
        case .balanced(let balancer):
            balancer.count(into: &counts)
            return 0
        }
    }

    /// Several apiservers: the URLs of the servers this loop reached (for `/readyz`); empty with one.
    var answeredServers: [String] {
        switch self {
        case .single: return []
        case .balanced(let balancer): return balancer.answeredServers
        }
    }
}

/// An upgrade tunnel's server with several apiservers: the balancer's choice, and another one when the connection
/// fails before anything was sent (the request head goes out only once connected), at most `servers + 1` tries.
/// The tunnel then stays on its server for its whole life.
final class TunnelRoute {
    private let balancer: LoopBalancer
    private var serverID: Int?
    private var attempts = 0

    init(balancer: LoopBalancer) {
        self.balancer = balancer
    }

    /// Picks the server to dial: the first one (`failure` nil), or another after the last one failed to connect.
    /// `body` runs on the loop, at once or when a server becomes healthy; with a failure when none is in time.
    func next(after failure: UpstreamFailure?, _ body: @escaping (Result<UpstreamTarget, UpstreamFailure>) -> Void) {
        if let failure, let serverID {
            balancer.tunnelConnection(to: serverID, failed: failure)
        }
        attempts += 1
        if let failure, attempts > balancer.slots.count + 1 {
            body(.failure(failure))
            return
        }
        balancer.chooseTunnelServer(avoiding: serverID) { [self] result in
            switch result {
            case .success(let server):
                serverID = server.id
                body(.success(server.target))
            case .failure(let failure):
                body(.failure(failure))
            }
        }
    }

    /// The connection is up: the server answers.
    func connected() {
        if let serverID { balancer.tunnelConnection(to: serverID, failed: nil) }
    }
}
