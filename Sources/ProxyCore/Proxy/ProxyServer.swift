import Dispatch
public import FoundationEssentials
public import Logging
import Synchronization

/// What every loop shares and never changes while proxyd runs: the flags (filters, prefixes, static files, limits).
/// What a reload may change lives in `ConfigurationVersion`.
final class SharedProxyState: Sendable {
    let filter: RequestFilter?
    let logger: Logger
    let accessLog: Bool
    let logFormat: LogFormat
    let limits: HTTP1Limits
    /// `--api-prefix`, with a leading and trailing slash.
    let apiPrefix: String
    let staticFiles: StaticFiles?
    /// `--keepalive` for upgrade connections.
    let upgradeKeepAlive: Duration?
    let http2HealthCheck: HTTP2HealthCheck
    /// Who may connect, how many at once, for how long; `--read-only`.
    let policy: ConnectionPolicy

    init(configuration: ProxyConfiguration, logger: Logger) {
        filter = configuration.filter
        self.logger = logger
        accessLog = configuration.accessLog
        logFormat = configuration.logFormat
        limits = HTTP1Limits()
        apiPrefix = PathRouter(apiPrefix: configuration.apiPrefix).apiPrefix
        staticFiles = configuration.wwwDirectory.map { StaticFiles(directory: $0, prefix: configuration.wwwPrefix) }
        upgradeKeepAlive = configuration.upgradeKeepAlive
        http2HealthCheck = configuration.http2HealthCheck
        policy = ConnectionPolicy(configuration: configuration)
    }
}

/// A configuration version as one loop uses it: the version, and this loop's way to its apiservers (one pool, or a
/// balancer with a pool per server), with connections made with it. Requests capture it when they start
/// (`ProxyExchange.upstream`).
final class LoopUpstream {
    let version: ConfigurationVersion
    let servers: LoopServers

    init(version: ConfigurationVersion, servers: LoopServers) {
        self.version = version
        self.servers = servers
    }
}

/// What one event loop owns: its upstream pools (one set per configuration version still in use), its client
/// connections and its counters. Touched only on `loop`.
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    let shared: SharedProxyState
    /// The filter's verdicts memoized for this loop (`nil` with `--disable-filter`).
    let filterCache: RequestFilterCache?
    let metrics = LoopMetrics()
    /// The configuration version new requests use.
    private(set) var current: LoopUpstream
    /// Replaced versions whose pools still carry requests (watches, downloads); dropped once drained.
    private var retiredUpstreams: [ObjectIdentifier: LoopUpstream] = [:]
    /// `Host` values classified for this loop (ordinary, service/pod host, invalid).
    let hostClasses = HostClassCache()
    private var connections: [ObjectIdentifier: ClientConnection] = [:]
    private var nextConnectionID: UInt64 = 0
    /// `--accept-uids` lookups for this loop's connections (one netlink socket, opened on first use).
    let peerOwners = PeerOwnerLookup()
    /// Connections refused over `--max-connections` that are still being closed.
    var lingeringRefusals = 0
    /// Refusals over `--max-connections` not yet logged, and when the last log line was written (at most one
    /// line per burst and per 10 s).
    var overCapacityRefusals = 0
    var overCapacityLoggedAt: UInt64 = 0
    var draining = false
    var onIdle: (@Sendable () -> Void)?

    /// - Parameter index: the loop's position in the group (0 coordinates several apiservers).
    init(loop: EventLoop, index: Int, shared: SharedProxyState, version: ConfigurationVersion) {
        self.loop = loop
        self.shared = shared
        filterCache = shared.filter.map(RequestFilterCache.init(filter:))
        current = LoopUpstream(
            version: version,
            servers: version.makeLoopServers(loop: loop, index: index, shared: shared, metrics: metrics))
    }

    /// Makes `upstream` (a new version with this loop's servers for it) the one new requests use; the previous
    /// one's pools drain (`LoopServers.retire`).
    func install(_ upstream: LoopUpstream) {
        loop.assertInLoop()
        let old = current
        current = upstream
        // Answers to the old credentials say nothing about the new ones.
        metrics.health.authRevision = 0
        metrics.health.lastAuthRejected = 0
        metrics.health.lastAuthAccepted = 0
        let key = ObjectIdentifier(old)
        retiredUpstreams[key] = old
        if draining { old.servers.shutdown() }
        old.servers.retire { [weak self] in
            self?.retiredUpstreams.removeValue(forKey: key)
        }
    }

    /// The loop's pool for configuration version `id`, if it still has one.
    func upstream(forVersion id: UInt64) -> LoopUpstream? {
        if current.version.id == id { return current }
        return retiredUpstreams.values.first { $0.version.id == id }
    }

    private var sweepTimer: LoopTimer?

    /// Once a second, checks every connection's header/idle/linger deadline (cheaper than a timer per request).
    private func scheduleSweep() {
        guard sweepTimer == nil else { return }
        let box = LoopBound(self)
        sweepTimer = loop.scheduleTimer(after: .seconds(1)) {
            let context = box.value
            context.sweepTimer = nil
            let now = DispatchTime.now().uptimeNanoseconds
            for connection in Array(context.connections.values) { connection.checkDeadline(now: now) }
            if !context.connections.isEmpty { context.scheduleSweep() }
        }
    }

    func accept(fd: Int32, peer: SocketAddress) {
        loop.assertInLoop()
        scheduleSweep()
        if draining {
            try? Posix.close(fd: fd)
            return
        }
        guard let admission = admit(fd: fd, peer: peer) else { return }
        nextConnectionID += 1
        metrics.values.clientConnectionsAccepted += 1
        let socket = StreamConnection(fd: fd, loop: loop)
        let connection = ClientConnection(socket: socket, peer: peer, context: self, id: nextConnectionID)
        connection.refusal = admission.refusal
        connection.start()
    }

    func register(_ c: ClientConnection) { connections[ObjectIdentifier(c)] = c }

    func unregister(_ c: ClientConnection) {
        guard connections.removeValue(forKey: ObjectIdentifier(c)) != nil else { return }
        shared.policy.limit.release()
        if draining && connections.isEmpty { signalIdle() }
    }

    private func signalIdle() {
        let callback = onIdle
        onIdle = nil
        callback?()
    }


    /// Stops taking requests: idle connections close now, busy ones after their current exchange.
    func drain() {
        draining = true
        for c in connections.values { c.closeIfIdle() }
        current.servers.shutdown()
        for upstream in retiredUpstreams.values { upstream.servers.shutdown() }
        if connections.isEmpty { signalIdle() }
    }

    func closeAll() {
        for c in connections.values { c.close() }
    }

    /// This loop's counters and health facts as they are now (run on the loop).
    func report() -> LoopReport {
        loop.assertInLoop()
        var values = metrics.snapshot()
        values.clientConnections = connections.count
        var counts = UpstreamConnectionCounts()
        let newestFrame = current.servers.count(into: &counts)
        for upstream in retiredUpstreams.values { _ = upstream.servers.count(into: &counts) }
        values.upstreamConnections = counts
        var health = metrics.health
        health.recordUpstreamSuccess(now: newestFrame)
        health.answeredServers = current.servers.answeredServers
        return LoopReport(metrics: values, health: health)
    }
}

/// One loop's answer to a scrape or a health probe.
struct LoopReport: Sendable {
    var metrics: MetricsSnapshot
    var health: LoopHealth
}

/// The proxy: listeners, event loops, per-loop upstream pools (or balancers over several apiservers), and the
/// configuration version in force.
public final class ProxyServer: Sendable {
    public let configuration: ProxyConfiguration
    let shared: SharedProxyState
    private let group: EventLoopGroup
    /// By loop identity, and in loop order (the readiness monitor uses the first loop).
    private let contexts: [ObjectIdentifier: LoopContext]
    let orderedContexts: [LoopContext]
    private let listeners = Mutex<[Listener]>([])
    let counters: ServiceCounters
    /// The version new requests get, the id the next one will have, and whether a graceful stop began.
    let state: Mutex<(version: ConfigurationVersion, nextID: UInt64, stopping: Bool)>
    /// Reloads run here one at a time (they may run an exec plugin, which blocks).
    let reloadQueue = DispatchQueue(label: "proxyd.reload")
    let watcher = Mutex<ConfigurationWatcher?>(nil)
    let readinessMonitor = Mutex<RepeatingTimer?>(nil)
    private let heapTrimmer = Mutex<IdleHeapTrimmer?>(nil)

    /// - Throws: `CredentialError` or `TLSError` when the credentials or TLS material cannot be loaded,
    ///   `FailoverError` for an unusable `--failover-server`.
    public init(configuration: ProxyConfiguration, logger: Logger, counters: ServiceCounters = ServiceCounters()) throws {
        self.configuration = configuration
        self.counters = counters
        shared = SharedProxyState(configuration: configuration, logger: logger)
        group = EventLoopGroup(count: max(1, configuration.loopCount))
        let version = try ConfigurationVersion(
            id: 1, target: configuration.upstream, failover: configuration.failover, coordinator: group.loops[0],
            apiPrefix: configuration.apiPrefix, appendServerPath: configuration.appendServerPath,
            staticFiles: shared.staticFiles, logger: logger, counters: counters)
        counters.configurationLoaded(at: Date().timeIntervalSince1970)
        state = Mutex((version, 2, false))
        var contexts: [ObjectIdentifier: LoopContext] = [:]
        var ordered: [LoopContext] = []
        for (index, loop) in group.loops.enumerated() {
            let context = LoopContext(loop: loop, index: index, shared: shared, version: version)
            contexts[ObjectIdentifier(loop)] = context
            ordered.append(context)
        }
        self.contexts = contexts
        orderedContexts = ordered
    }

    /// The configuration version new requests use.
    var currentVersion: ConfigurationVersion { state.withLock { $0.version } }

    /// When the kubeconfig's `auth-provider` (oidc) id-token expires, if it says; proxyd does not refresh it.
    public var authProviderTokenExpiry: Date? { currentVersion.credentials.authProviderTokenExpiry }

    /// Why the credentials cannot be used right now (an exec plugin or token file failing since start-up), if so.
    public var credentialFailure: String? { currentVersion.credentials.failure }

    /// Binds the listeners and starts serving.
    /// - Returns: the addresses being served, as `Starting to serve on …` prints them.
    /// - Throws: `IOError` (bind or listen failures).
    @discardableResult
    public func start() throws -> [SocketAddress] {
        var bound: [Listener] = []
        switch configuration.listen {
        case .tcp(let address, let port):
            if address == "0.0.0.0" {
                // Like Go's net.Listen: all addresses means both stacks ("[::]:port"), IPv4 only without IPv6.
                if let dual = try? Listener.bindTCP(host: "::", port: port) {
                    bound.append(dual)
                } else {
                    bound.append(try Listener.bindTCP(host: address, port: port))
                }
            } else {
                bound.append(try Listener.bindTCP(host: address, port: port))
            }
        case .unix(let path):
            // Other users can only reach the --accept-uids check if the socket file lets them connect.
            let mode: UInt32 = configuration.acceptUIDs.acceptsOtherUsers ? 0o666 : 0o700
            bound.append(try Listener.bindUnix(path: path, mode: mode))
        case .inherited(let fds):
            for fd in fds { bound.append(try Listener(inheritedFD: fd)) }
        }
        let contexts = self.contexts
        for listener in bound {
            shared.policy.watchDescriptorExhaustion(of: listener, logger: shared.logger)
            listener.start(group: group) { fd, peer, loop in
                guard let context = contexts[ObjectIdentifier(loop)] else {
                    try? Posix.close(fd: fd)
                    return
                }
                loop.execute {
                    context.accept(fd: fd, peer: peer)
                }
            }
        }
        listeners.withLock { $0 = bound }
        heapTrimmer.withLock { [policy = shared.policy] in $0 = IdleHeapTrimmer { policy.limit.count == 0 } }
        startWatching(currentVersion)
        startWatchingConfigurationFiles()
        return bound.map(\.localAddress)
    }

    /// Starts `version`'s credential polls (and its apiservers' checks and discovery); a changed TLS identity
    /// retires that version's connections.
    func startWatching(_ version: ConfigurationVersion) {
        let id = version.id
        let contexts = orderedContexts
        version.startWatching {
            for context in contexts {
                context.loop.execute { context.upstream(forVersion: id)?.servers.retireConnections() }
            }
        }
    }

    /// Runs `action` once every event loop has run a task queued now: a liveness probe for the systemd watchdog
    /// (a stuck loop means no call).
    public func whenLoopsResponsive(_ action: @escaping @Sendable () -> Void) {
        let group = DispatchGroup()
        for context in contexts.values {
            group.enter()
            context.loop.execute { group.leave() }
        }
        group.notify(queue: .global(), execute: action)
    }

    /// Graceful stop: stop accepting, let in-flight exchanges finish (up to `drainTimeout`), then close the rest.
    /// `completion` runs once everything is closed (on an arbitrary queue).
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        let bound = listeners.withLock { l in
            let out = l
            l = []
            return out
        }
        let version = state.withLock { s in
            s.stopping = true
            return s.version
        }
        stopBackgroundWork()
        version.stopWatching()
        heapTrimmer.withLock { $0?.stop() }
        // Completion waits for the listeners too (a unix socket file is unlinked when its listener closes), then
        // for every loop's connections, or for the drain deadline, whichever comes first; it runs once.
        let done = Mutex(false)
        let finish: @Sendable () -> Void = {
            let first = done.withLock { d in
                defer { d = true }
                return !d
            }
            if first { completion() }
        }
        let remaining = Mutex(contexts.count + bound.count)
        let oneDone: @Sendable () -> Void = {
            let left = remaining.withLock { r in
                r -= 1
                return r
            }
            if left == 0 { finish() }
        }
        let deadline = configuration.drainTimeout
        for listener in bound {
            listener.close(completion: oneDone)
        }
        for context in contexts.values {
            context.loop.execute {
                context.onIdle = oneDone
                context.drain()
            }
        }
        if contexts.isEmpty && bound.isEmpty { finish() }
        let nanos = Int(deadline.components.seconds) * 1_000_000_000
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanos)) { [contexts] in
            for context in contexts.values {
                context.loop.execute { context.closeAll() }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) { finish() }
        }
    }
}
