import Logging
import Synchronization

/// One version of what can change while proxyd runs (SIGHUP, an edited kubeconfig): the upstream target with its
/// TLS contexts, credentials and `proxy-url`, and what depends on the target (the router with
/// `--append-server-path`, the `Location` rewriter).
///
/// Immutable once built, apart from what rotates inside one version as before reloads existed: the credential
/// snapshot (token file, exec plugin) and the TLS contexts (client certificate files, an exec plugin's
/// certificate). Shared read-only by every loop; each loop has its own pool for it (`LoopUpstream`). A request
/// captures the version current when it started and uses it to the end, so a reload never changes a request
/// half-way.
final class ConfigurationVersion: Sendable {
    let id: UInt64
    let target: UpstreamTarget
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
    /// - Throws: `CredentialError` (an auth-provider or exec configuration proxyd cannot use), `TLSError`, or the
    ///   `ProxyEndpointError` of an unusable `proxy-url`.
    init(
        id: UInt64, target: UpstreamTarget, apiPrefix: String, appendServerPath: Bool, staticFiles: StaticFiles?,
        logger: Logger, counters: ServiceCounters
    ) throws {
        self.id = id
        self.target = target
        self.logger = logger
        self.counters = counters
        credentials = try CredentialStore(
            credentials: target.credentials, sendCredentials: target.scheme == "https",
            execCluster: ExecClusterInfo(target: target), logger: logger, counters: counters)
        var tlsConfiguration = target.tls
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
    /// client certificate file checks. `retireConnections` runs when the TLS identity changed: connections made
    /// with the old one must take no new requests.
    func startWatching(retireConnections: @escaping @Sendable () -> Void) {
        credentials.onExecClientIdentityChange { [weak self] certificate, key in
            guard let self else { return }
            var configuration = self.target.tls
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
        let reloader = ClientCertificateReloader(target: target, logger: logger, counters: counters) {
            [weak self] main, upgrade in
            self?.tls.withLock { $0 = (main, upgrade) }
            retireConnections()
        }
        reloader?.start()
        certificateReloader.withLock { $0 = reloader }
    }

    /// Stops the polls and timers (the version was replaced, or proxyd is stopping). Requests in flight keep the
    /// credential they were sent with.
    func stopWatching() {
        credentials.stopWatching()
        let reloader = certificateReloader.withLock { r in
            defer { r = nil }
            return r
        }
        reloader?.stop()
    }
}
