import Dispatch
public import FoundationEssentials
public import Logging
import Synchronization

/// Read-mostly state every loop shares: immutable configuration plus the credential store (swapped atomically).
final class SharedProxyState: Sendable {
    let router: PathRouter
    let filter: RequestFilter?
    let credentials: CredentialStore
    let logger: Logger
    let metrics: ProxyMetrics
    let accessLog: Bool
    let limits: HTTP1Limits
    let tlsContext: Mutex<TLSContext?>
    /// Same identity, ALPN `http/1.1` only: for protocol upgrades, which cannot ride HTTP/2.
    let upgradeTLSContext: Mutex<TLSContext?>
    let target: UpstreamTarget
    let locationRewriter: LocationRewriter
    let staticFiles: StaticFiles?
    /// Decides each request's target from its Host and path (Routing/).
    let requestRouter: RequestRouter
    /// `--keepalive` for upgrade connections.
    let upgradeKeepAlive: Duration?
    let http2HealthCheck: HTTP2HealthCheck
    /// The cluster's `proxy-url`, for every upstream connection (pooled and upgrades).
    let proxy: UpstreamProxy?
    /// Who may connect, how many at once, for how long; `--read-only`.
    let policy: ConnectionPolicy

    init(router: PathRouter, filter: RequestFilter?, credentials: CredentialStore, logger: Logger,
         metrics: ProxyMetrics, accessLog: Bool, tlsContext: TLSContext?, upgradeTLSContext: TLSContext?,
         target: UpstreamTarget, staticFiles: StaticFiles?, upgradeKeepAlive: Duration?,
         http2HealthCheck: HTTP2HealthCheck, proxy: UpstreamProxy?, policy: ConnectionPolicy) {
        self.router = router
        self.filter = filter
        self.credentials = credentials
        self.logger = logger
        self.metrics = metrics
        self.accessLog = accessLog
        self.limits = HTTP1Limits()
        self.tlsContext = Mutex(tlsContext)
        self.upgradeTLSContext = Mutex(upgradeTLSContext)
        self.target = target
        locationRewriter = LocationRewriter(target: target, router: router)
        self.staticFiles = staticFiles
        requestRouter = RequestRouter(paths: router, staticFiles: staticFiles)
        self.upgradeKeepAlive = upgradeKeepAlive
        self.http2HealthCheck = http2HealthCheck
        self.proxy = proxy
        self.policy = policy
    }
}

/// What one event loop owns: its upstream pool (or balancer) and its client connections. Touched only on `loop`.
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    let shared: SharedProxyState
    let servers: LoopServers
    /// The filter's verdicts memoized for this loop (`nil` with `--disable-filter`).
    let filterCache: RequestFilterCache?
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

    init(loop: EventLoop, shared: SharedProxyState, servers: LoopServers) {
        self.loop = loop
        self.shared = shared
        filterCache = shared.filter.map(RequestFilterCache.init(filter:))
        self.servers = servers
    }

    /// This loop's pool for one apiserver.
    static func makePool(loop: EventLoop, shared: SharedProxyState, target: UpstreamTarget) -> UpstreamPool {
        UpstreamPool(
            loop: loop, target: target, proxy: shared.proxy, logger: shared.logger, healthCheck: shared.http2HealthCheck,
            requestAuthority: shared.target.authority
        ) { [shared] in
            shared.tlsContext.withLock { $0 }
        }
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
        servers.shutdown()
        if connections.isEmpty { signalIdle() }
    }

    func closeAll() {
        for c in connections.values { c.close() }
    }
}

/// The proxy: listeners, event loops, and per-loop upstream pools.
public final class ProxyServer: Sendable {
    public let configuration: ProxyConfiguration
    private let shared: SharedProxyState
    private let group: EventLoopGroup
    private let contexts: [ObjectIdentifier: LoopContext]
    private let listeners = Mutex<[Listener]>([])
    private let heapTrimmer = Mutex<IdleHeapTrimmer?>(nil)
    private let certificateReloader: ClientCertificateReloader?
    /// Several apiservers (`configuration.failover`): their health, probes and discovery; nil with one server.
    private let apiservers: APIServerSet?

    /// - Throws: `CredentialError` or `TLSError` when the credentials or TLS material cannot be loaded,
    ///   `FailoverError` for an unusable `--failover-server`.
    public init(configuration: ProxyConfiguration, logger: Logger, metrics: ProxyMetrics = ProxyMetrics()) throws {
        self.configuration = configuration
        let failover = configuration.failover
        // Several apiservers: every TLS context verifies the primary's server name, whichever server it dials.
        let serverTargets = failover.isEnabled
            ? try FailoverConfiguration.targets(primary: configuration.upstream, failoverURLs: failover.servers) : []
        let target = serverTargets.first ?? configuration.upstream
        let credentials = try CredentialStore(
            credentials: target.credentials, sendCredentials: target.scheme == "https",
            execCluster: ExecClusterInfo(target: configuration.upstream), logger: logger)
        var tlsConfiguration = target.tls
        if let identity = credentials.execClientIdentity {
            tlsConfiguration.clientCertificatePEM = identity.certificate
            tlsConfiguration.clientKeyPEM = identity.key
        }
        let tls: TLSContext? = target.scheme == "https" ? try TLSContext(configuration: tlsConfiguration) : nil
        var upgradeTLS = tlsConfiguration
        upgradeTLS.alpn = ["http/1.1"]
        let upgradeTLSContext: TLSContext? =
            target.scheme == "https" ? try TLSContext(configuration: upgradeTLS) : nil
        var proxy: UpstreamProxy?
        if let proxyURL = target.effectiveProxyURL {
            switch ProxyEndpoint.parse(proxyURL) {
            case .success(let endpoint): proxy = try UpstreamProxy(endpoint: endpoint, tls: configuration.upstream.tls)
            case .failure(let error): throw error
            }
        }
        let router = PathRouter(
            apiPrefix: configuration.apiPrefix,
            serverBasePath: configuration.appendServerPath ? target.basePath : "")
        shared = SharedProxyState(
            router: router, filter: configuration.filter, credentials: credentials, logger: logger,
            metrics: metrics, accessLog: configuration.accessLog, tlsContext: tls,
            upgradeTLSContext: upgradeTLSContext, target: target,
            staticFiles: configuration.wwwDirectory.map { StaticFiles(directory: $0, prefix: configuration.wwwPrefix) },
            upgradeKeepAlive: configuration.upgradeKeepAlive, http2HealthCheck: configuration.http2HealthCheck,
            proxy: proxy, policy: ConnectionPolicy(configuration: configuration))
        group = EventLoopGroup(count: max(1, configuration.loopCount))
        var apiservers: APIServerSet?
        if failover.isEnabled {
            apiservers = APIServerSet(
                configuration: failover, targets: serverTargets, coordinator: group.loops[0], logger: logger
            ) { [shared] in
                HeaderRewriter.upstreamRequestHeaders(
                    HTTPHeaders(), clientIP: nil, credentials: shared.credentials.current, isUpgrade: false)
            }
        }
        self.apiservers = apiservers
        var contexts: [ObjectIdentifier: LoopContext] = [:]
        for (index, loop) in group.loops.enumerated() {
            let servers: LoopServers
            if let apiservers {
                let balancer = LoopBalancer(loop: loop, index: index, servers: apiservers) { [shared] server in
                    LoopContext.makePool(loop: loop, shared: shared, target: server.target)
                }
                apiservers.register(balancer)
                servers = .balanced(balancer)
            } else {
                servers = .single(LoopContext.makePool(loop: loop, shared: shared, target: target))
            }
            contexts[ObjectIdentifier(loop)] = LoopContext(loop: loop, shared: shared, servers: servers)
        }
        self.contexts = contexts
        certificateReloader = ClientCertificateReloader(target: target, logger: logger) { [shared, contexts] main, upgrade in
            shared.tlsContext.withLock { $0 = main }
            shared.upgradeTLSContext.withLock { $0 = upgrade }
            for context in contexts.values {
                context.loop.execute { context.servers.retireConnections() }
            }
        }
        // An exec plugin's new client certificate: new connections use it, old ones drain (as for files above).
        credentials.onExecClientIdentityChange { [shared, target, contexts] certificate, key in
            var tls = target.tls
            tls.clientCertificatePEM = certificate
            tls.clientKeyPEM = key
            var upgrade = tls
            upgrade.alpn = ["http/1.1"]
            do {
                let context = try TLSContext(configuration: tls)
                let upgradeContext = try TLSContext(configuration: upgrade)
                shared.tlsContext.withLock { $0 = context }
                shared.upgradeTLSContext.withLock { $0 = upgradeContext }
                for loopContext in contexts.values {
                    loopContext.loop.execute { loopContext.servers.retireConnections() }
                }
            } catch {
                shared.logger.error("exec plugin returned a client certificate that cannot be used: \(error)")
            }
        }
    }

    public var metrics: ProxyMetrics { shared.metrics }

    /// When the kubeconfig's `auth-provider` (oidc) id-token expires, if it says; proxyd does not refresh it.
    public var authProviderTokenExpiry: Date? { shared.credentials.authProviderTokenExpiry }

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
        shared.credentials.startWatching()
        certificateReloader?.start()
        apiservers?.start()
        return bound.map(\.localAddress)
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
        shared.credentials.stopWatching()
        certificateReloader?.stop()
        heapTrimmer.withLock { $0?.stop() }
        apiservers?.stop()
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
