import Dispatch
import Logging
import Synchronization

/// One apiserver of the cluster, as the balancer knows it.
struct APIServer: Sendable, Equatable {
    /// Stable for the life of the proxy (never reused).
    let id: Int
    /// The cluster's target at this server's address (see `FailoverConfiguration.targets`).
    let target: UpstreamTarget
    /// Found in the EndpointSlices (dropped when no longer listed), rather than configured (kept for good).
    let discovered: Bool

    var url: String { "\(target.scheme)://\(target.authority)" }
}

/// The servers and their health as every loop's balancer sees them. Versioned: a loop never applies an older
/// snapshot after a newer one.
struct ServerSnapshot: Sendable {
    let version: Int
    let servers: [APIServer]
    let healthy: [Bool]
}

/// The apiservers of one cluster and their health: one per proxy (per configuration version), shared by the
/// `LoopBalancer` of every loop.
///
/// Health lives here, once per server, so that what one loop learns (a refused connection, a GOAWAY) spares the
/// others. It is touched only when something happens to a server, never per request: each loop keeps a copy of the
/// latest `ServerSnapshot` for choosing, and gets a new one through its queue whenever health or membership
/// changes. Probes of unhealthy servers, `/readyz` checks and discovery run on the first loop (the coordinator).
final class APIServerSet: Sendable {
    let configuration: FailoverConfiguration
    /// The cluster's own server, with the TLS name every server is verified against.
    let primary: UpstreamTarget
    let logger: Logger
    /// Header fields (credentials, User-Agent) for proxyd's own requests: `/readyz` and discovery.
    let requestHeaders: @Sendable () -> HTTPHeaders
    private let coordinator: EventLoop
    private let state: Mutex<State>

    private struct State {
        var servers: [APIServer]
        var health: [Int: ServerHealth] = [:]
        var version = 0
        var nextID = 0
        var waitingLoops: Set<Int> = []
        var balancers: [(loop: EventLoop, balancer: WeakLoopBound<LoopBalancer>)] = []
        var probeTimer: LoopTimer?
        var probeTimerDue = UInt64.max
        var readyzTimer: LoopTimer?
        var discovery: LoopBound<EndpointSliceDiscovery>?
        var stopped = false
    }

    /// - Parameters:
    ///   - targets: the configured servers, primary first (`FailoverConfiguration.targets`).
    ///   - coordinator: the loop that runs probes, `/readyz` checks and discovery.
    init(configuration: FailoverConfiguration, targets: [UpstreamTarget], coordinator: EventLoop, logger: Logger,
         requestHeaders: @escaping @Sendable () -> HTTPHeaders) {
        precondition(!targets.isEmpty, "the primary server is always configured")
        self.configuration = configuration
        primary = targets[0]
        self.logger = logger
        self.requestHeaders = requestHeaders
        self.coordinator = coordinator
        var initial = State(servers: [])
        for target in targets {
            initial.servers.append(APIServer(id: initial.nextID, target: target, discovered: false))
            initial.health[initial.nextID] = ServerHealth()
            initial.nextID += 1
        }
        state = Mutex(initial)
    }

    var snapshot: ServerSnapshot { state.withLock { Self.snapshot(of: $0) } }

    private static func snapshot(of state: State) -> ServerSnapshot {
        ServerSnapshot(
            version: state.version, servers: state.servers,
            healthy: state.servers.map { state.health[$0.id]?.isHealthy ?? false })
    }

    /// Adds a loop's balancer; the first one registered runs on the coordinator loop.
    func register(_ balancer: LoopBalancer) {
        let box = WeakLoopBound(balancer)
        state.withLock { $0.balancers.append((balancer.loop, box)) }
    }

    /// Starts the periodic `/readyz` checks and discovery, if configured.
    func start() {
        if configuration.readyzInterval != nil { scheduleReadyzChecks() }
        guard configuration.discover else { return }
        let set = self
        coordinator.execute {
            guard let balancer = set.coordinatorBalancer() else { return }
            let discovery = EndpointSliceDiscovery(balancer: balancer, servers: set)
            let proceed = set.state.withLock { state -> Bool in
                guard !state.stopped else { return false }
                state.discovery = LoopBound(discovery)
                return true
            }
            if proceed { discovery.start() }
        }
    }

    /// Stops timers and discovery (graceful shutdown, or a replaced configuration).
    func stop() {
        let (probe, readyz, discovery) = state.withLock { state in
            state.stopped = true
            defer {
                state.probeTimer = nil
                state.readyzTimer = nil
                state.discovery = nil
            }
            return (state.probeTimer, state.readyzTimer, state.discovery)
        }
        probe?.cancel()
        readyz?.cancel()
        if let discovery { coordinator.execute { discovery.value.stop() } }
    }

    // MARK: health

    /// Records evidence about a server, seen on any loop.
    /// - Returns: the new snapshot when the server's health changed; the caller applies it at once (its own loop
    ///   also gets it through its queue, like every other loop).
    func report(_ serverID: Int, _ evidence: HealthEvidence) -> ServerSnapshot? {
        let now = DispatchTime.now().uptimeNanoseconds
        let jitter = Double.random(in: 0...1)
        let active = configuration.readyzInterval != nil
        let outcome = state.withLock { state -> (ServerSnapshot, APIServer, ServerHealth)? in
            guard var health = state.health[serverID] else { return nil }
            let changed = health.record(evidence, now: now, jitter: jitter, activeChecks: active)
            state.health[serverID] = health
            if !health.isHealthy { scheduleProbes(&state, now: now) }
            guard changed, let server = state.servers.first(where: { $0.id == serverID }) else { return nil }
            state.version += 1
            return (Self.snapshot(of: state), server, health)
        }
        guard let (snapshot, server, health) = outcome else { return nil }
        if health.isHealthy {
            logger.notice("apiserver \(server.url) is reachable again")
        } else {
            let retry = health.nextProbe(configuration.backoff, waiting: false).map { $0 > now ? $0 - now : 0 } ?? 0
            // A GOAWAY is routine (restarts, --goaway-chance): said, but not as a warning.
            logger.log(
                level: evidence == .goingAway ? .notice : .warning,
                "apiserver \(server.url) is unhealthy (\(health.reason ?? "failed")); new requests go to the others, it is tried again in \(retry / 1_000_000) ms")
        }
        broadcast(snapshot)
        return snapshot
    }

    /// A loop has requests waiting for a healthy server (or no longer has): probes then come sooner.
    func setWaiting(loop index: Int, _ waiting: Bool) {
        let now = DispatchTime.now().uptimeNanoseconds
        state.withLock { state in
            if waiting {
                state.waitingLoops.insert(index)
            } else {
                state.waitingLoops.remove(index)
            }
            scheduleProbes(&state, now: now)
        }
    }

    /// Each server, in order, with the balancer's verdict and why it is unhealthy: for `/readyz` and `/metrics`.
    func healthReport() -> [(server: APIServer, healthy: Bool, reason: String?)] {
        state.withLock { state in
            state.servers.map { server in
                let health = state.health[server.id]
                return (server, health?.isHealthy ?? false, health?.reason)
            }
        }
    }

    /// Why no server could take a request, for the 503 after the wait.
    func unreachableSummary() -> String {
        let reasons = state.withLock { state in
            state.servers.map { server in
                "\(server.url): \(state.health[server.id]?.reason ?? "unhealthy")"
            }
        }
        return "no apiserver is reachable (" + reasons.joined(separator: "; ") + ")"
    }

    /// (Re)arms the probe timer for the earliest due probe. Lock held.
    private func scheduleProbes(_ state: inout State, now: UInt64) {
        guard !state.stopped else { return }
        let waiting = !state.waitingLoops.isEmpty
        var due = UInt64.max
        for health in state.health.values {
            if let next = health.nextProbe(configuration.backoff, waiting: waiting) { due = min(due, next) }
        }
        guard due != .max else { return }
        if state.probeTimer != nil && state.probeTimerDue <= due { return }
        state.probeTimer?.cancel()
        state.probeTimerDue = due
        let set = self
        let delay = due > now ? due - now : 0
        state.probeTimer = coordinator.scheduleTimer(after: .nanoseconds(Int64(clamping: delay))) {
            set.runDueProbes()
        }
    }

    /// On the coordinator: starts every probe that is due and re-arms the timer.
    private func runDueProbes() {
        let now = DispatchTime.now().uptimeNanoseconds
        let due = state.withLock { state -> [Int] in
            state.probeTimer = nil
            state.probeTimerDue = .max
            guard !state.stopped else { return [] }
            let waiting = !state.waitingLoops.isEmpty
            var due: [Int] = []
            for server in state.servers {
                guard var health = state.health[server.id],
                    health.startProbeIfDue(configuration.backoff, waiting: waiting, now: now)
                else { continue }
                state.health[server.id] = health
                due.append(server.id)
            }
            scheduleProbes(&state, now: now)
            return due
        }
        guard !due.isEmpty, let balancer = coordinatorBalancer() else { return }
        for id in due {
            balancer.probe(serverID: id, readyz: configuration.readyzInterval != nil)
        }
    }

    /// On the coordinator, every `readyzInterval`: `/readyz` of each healthy server (unhealthy ones are probed on
    /// their backoff schedule).
    private func scheduleReadyzChecks() {
        guard let interval = configuration.readyzInterval else { return }
        let set = self
        let timer = coordinator.scheduleTimer(after: interval) {
            let healthy = set.state.withLock { state -> [Int] in
                guard !state.stopped else { return [] }
                return state.servers.filter { state.health[$0.id]?.isHealthy == true }.map(\.id)
            }
            if let balancer = set.coordinatorBalancer() {
                for id in healthy { balancer.checkReadyz(serverID: id) }
            }
            set.scheduleReadyzChecks()
        }
        let keep = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.readyzTimer = timer
            return true
        }
        if !keep { timer.cancel() }
    }

    /// The coordinator loop's balancer. Call on the coordinator loop only.
    private func coordinatorBalancer() -> LoopBalancer? {
        coordinator.assertInLoop()
        return state.withLock { $0.balancers.first }?.balancer.value
    }

    private func broadcast(_ snapshot: ServerSnapshot) {
        let balancers = state.withLock { $0.balancers }
        for (loop, box) in balancers {
            loop.execute { box.value?.apply(snapshot) }
        }
    }

    // MARK: membership

    /// The addresses discovery found (the EndpointSlices' ready endpoints). Configured servers stay whatever it
    /// says; discovered ones come and go with the list.
    func setDiscovered(_ addresses: [ServerAddress]) {
        let outcome = state.withLock { state -> (ServerSnapshot, [String])? in
            let configured = state.servers.filter { !$0.discovered }
            var kept: [APIServer] = []
            for address in addresses {
                if configured.contains(where: { $0.target.host == address.host && $0.target.port == address.port }) {
                    continue
                }
                if kept.contains(where: { $0.target.host == address.host && $0.target.port == address.port }) {
                    continue
                }
                if let existing = state.servers.first(where: {
                    $0.discovered && $0.target.host == address.host && $0.target.port == address.port
                }) {
                    kept.append(existing)
                } else {
                    let target = primary.withAddress(host: address.host, port: address.port, authority: address.authority)
                    kept.append(APIServer(id: state.nextID, target: target, discovered: true))
                    state.health[state.nextID] = ServerHealth()
                    state.nextID += 1
                }
            }
            let updated = configured + kept
            guard updated != state.servers else { return nil }
            for server in state.servers where !updated.contains(server) { state.health[server.id] = nil }
            state.servers = updated
            state.version += 1
            return (Self.snapshot(of: state), updated.map(\.url))
        }
        guard let (snapshot, urls) = outcome else { return }
        logger.info("apiservers: \(urls.joined(separator: ", "))")
        broadcast(snapshot)
    }
}

/// A server address found by discovery.
struct ServerAddress: Sendable, Equatable, Hashable {
    /// DNS name or IP literal, without brackets.
    let host: String
    let port: UInt16

    /// host:port, IPv6 bracketed.
    var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
