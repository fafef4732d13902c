import Logging
import Synchronization

/// One version of what can change while proxyd runs (SIGHUP, an edited kubeconfig): the upstream target with its
/// TLS contexts, credentials and `proxy-url`, and what depends on the target (the router with
/// `--append-server-path`, the `Location` rewriter).
///
/// Immutable once built, apart from what rotates inside one version as before reloads existed: the credential
/// snapshot (token file, exec plugin) and the TLS contexts (client certificate files, an exec plugin's
/// certificate). Shared read-only by every loop; each loop has its own pools for it (`LoopUpstream`). A request
/// captures the version current when it started and uses it to the end, so a reload never changes a request
/// half-way.
///
/// With several apiservers (`--failover-server`, `--discover-apiservers`) the version also owns their
/// `APIServerSet` (health, probes, discovery with this version's credentials); each loop gets a `LoopBalancer` over
/// it (`makeLoopServers`). A reload builds a new set from the new primary and the same flags.
final class ConfigurationVersion: Sendable {
    let id: UInt64
    /// The cluster's server as the configuration names it.
    let target: UpstreamTarget
    /// What TLS contexts are built from: `target`, or with several apiservers `target` verifying its own server
    /// name whichever server is dialled (`FailoverConfiguration.targets`).
    private let tlsTarget: UpstreamTarget
    /// Several apiservers: the servers of this version and their health; nil with one server.
    let apiservers: APIServerSet?
    let credentials: CredentialStore
    /// The context for pooled connections (ALPN `h2`, `http/1.1`) and the `http/1.1`-only one for upgrades.
    private let tls: Mutex<(main: TLSContext?, upgrade: TLSContext?)>
    let proxy: UpstreamProxy?
    let router: PathRouter
    /// Decides each request's target from its Host and path (Routing/), with `router`.
    let requestRouter: RequestRouter
    let locationRewriter: LocationRewriter
    private let logger: Logger
    private let counters: ServiceCounters
    private let certificateReloader = Mutex<ClientCertificateReloader?>(nil)

    /// Builds the version: runs an exec plugin (blocking the caller), reads token files, builds TLS contexts.
    /// - Parameters:
    ///   - failover: the several-apiservers flags; the servers are `target` and the `--failover-server`s.
    ///   - coordinator: the loop that runs the server set's probes and discovery (the first one).
    /// - Throws: `CredentialError` (an auth-provider or exec configuration proxyd cannot use), `TLSError`, the
    ///   `ProxyEndpointError` of an unusable `proxy-url`, or `FailoverError` (a `--failover-server` that does not
    ///   fit `target`).
    init(
        id: UInt64, target: UpstreamTarget, failover: FailoverConfiguration, coordinator: EventLoop,
        apiPrefix: String, appendServerPath: Bool, staticFiles: StaticFiles?, logger: Logger, counters: ServiceCounters
    ) throws {
        self.id = id
        self.target = target
        self.logger = logger
        self.counters = counters
        let serverTargets =
            failover.isEnabled ? try FailoverConfiguration.targets(primary: target, failoverURLs: failover.servers) : []
        tlsTarget = serverTargets.first ?? target
        credentials = try CredentialStore(
            credentials: target.credentials, sendCredentials: target.scheme == "https",
            execCluster: ExecClusterInfo(target: target), logger: logger, counters: counters)
        var tlsConfiguration = tlsTarget.tls
        if let identity = credentials.execClientIdentity {
            tlsConfiguration.clientCertificatePEM = identity.certificate
            tlsConfiguration.clientKeyPEM = identity.key
        }
        tls = Mutex(try Self.makeContexts(tlsConfiguration, https: target.scheme == "https"))
        if let proxyURL = target.effectiveProxyURL {
            switch ProxyEndpoint.parse(proxyURL) {
            case .success(let endpoint): proxy = try UpstreamProxy(endpoint: endpoint, tls: target.tls)
            case .failure(let error): throw error
            }
        } else {
            proxy = nil
        }
        router = PathRouter(apiPrefix: apiPrefix, serverBasePath: appendServerPath ? target.basePath : "")
        requestRouter = RequestRouter(paths: router, staticFiles: staticFiles)
        locationRewriter = LocationRewriter(target: target, router: router)
        if serverTargets.isEmpty {
            apiservers = nil
        } else {
            apiservers = APIServerSet(
                configuration: failover, targets: serverTargets, coordinator: coordinator, logger: logger
            ) { [credentials] in
                HeaderRewriter.upstreamRequestHeaders(
                    HTTPHeaders(), clientIP: nil, credentials: credentials.current, isUpgrade: false)
            }
        }
    }

    private static func makeContexts(_ configuration: TLSConfiguration, https: Bool) throws(TLSError)
        -> (main: TLSContext?, upgrade: TLSContext?)
    {
        guard https else { return (nil, nil) }
        var upgrade = configuration
        upgrade.alpn = ["http/1.1"]
        return (try TLSContext(configuration: configuration), try TLSContext(configuration: upgrade))
    }

    /// The TLS context for new pooled connections.
    var tlsContext: TLSContext? { tls.withLock { $0.main } }
    /// The TLS context for new upgrade connections.
    var upgradeTLSContext: TLSContext? { tls.withLock { $0.upgrade } }

    /// Starts what keeps this version's credentials fresh: token-file polls, the exec plugin's refresh timer,
    /// client certificate file checks; and with several apiservers their `/readyz` checks and discovery (every
    /// loop's servers are made by then: `makeLoopServers`). `retireConnections` runs when the TLS identity changed:
    /// connections made with the old one must take no new requests.
    func startWatching(retireConnections: @escaping @Sendable () -> Void) {
        credentials.onExecClientIdentityChange { [weak self] certificate, key in
            guard let self else { return }
            var configuration = self.tlsTarget.tls
            configuration.clientCertificatePEM = certificate
            configuration.clientKeyPEM = key
            do {
                let contexts = try Self.makeContexts(configuration, https: true)
                self.tls.withLock { $0 = contexts }
                retireConnections()
            } catch {
                self.logger.error("exec plugin returned a client certificate that cannot be used: \(error)")
            }
        }
        credentials.startWatching()
        let reloader = ClientCertificateReloader(target: tlsTarget, logger: logger, counters: counters) {
            [weak self] main, upgrade in
            self?.tls.withLock { $0 = (main, upgrade) }
            retireConnections()
        }
        reloader?.start()
        certificateReloader.withLock { $0 = reloader }
        apiservers?.start()
    }

    /// Stops the polls and timers, and with several apiservers their probes, checks and discovery watch (the
    /// version was replaced, or proxyd is stopping). Requests in flight keep the credential they were sent with.
    func stopWatching() {
        apiservers?.stop()
        credentials.stopWatching()
        let reloader = certificateReloader.withLock { r in
            defer { r = nil }
            return r
        }
        reloader?.stop()
    }
}

extension ConfigurationVersion {
    /// One loop's way to this version's apiservers: its pool of the one server, or a `LoopBalancer` with a pool per
    /// server, registered with `apiservers`. Call for every loop in loop order (the first is the coordinator),
    /// before `startWatching`.
    func makeLoopServers(loop: EventLoop, index: Int, shared: SharedProxyState, metrics: LoopMetrics) -> LoopServers {
        guard let apiservers else {
            return .single(makePool(loop: loop, target: target, shared: shared, metrics: metrics))
        }
        let balancer = LoopBalancer(loop: loop, index: index, servers: apiservers, metrics: metrics) {
            [self] server in
            makePool(loop: loop, target: server.target, shared: shared, metrics: metrics)
        }
        apiservers.register(balancer)
        return .balanced(balancer)
    }

    /// A loop's pool for one apiserver of this version: its TLS contexts, `proxy-url`, and the cluster server's
    /// authority in requests whichever server it dials.
    private func makePool(loop: EventLoop, target server: UpstreamTarget, shared: SharedProxyState, metrics: LoopMetrics)
        -> UpstreamPool
    {
        UpstreamPool(
            loop: loop, target: server, proxy: proxy, logger: shared.logger, healthCheck: shared.http2HealthCheck,
            metrics: metrics, requestAuthority: target.authority
        ) { [self] in tlsContext }
    }
}
