import ArgumentParser
import Dispatch
import FoundationEssentials
import Logging
import ProxyCore

/// `proxyd`: kubectl proxy's flags, defaults and messages, parsed into a `ProxyConfiguration`.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxyd",
        abstract: "Run a proxy to the Kubernetes API server (a drop-in replacement for kubectl proxy).",
        discussion: """
            Listens on 127.0.0.1:8001 by default and forwards requests to the apiserver of the current kubeconfig
            context, adding its credentials. Flags follow kubectl proxy.
            """,
        version: ProxyVersion.version
    )

    // MARK: kubectl proxy flags

    @Option(name: [.short, .long], help: "The port on which to run the proxy. Set to 0 to pick a random port.")
    var port: Int = 8001

    @Option(help: "The IP address on which to serve on (127.0.0.1, ::1, [::1], 0.0.0.0, ::).")
    var address: String = "127.0.0.1"

    @Option(name: [.customShort("u"), .long], help: "Unix socket on which to run the proxy.")
    var unixSocket: String?

    @Option(help: "Prefix to serve the proxied API under.")
    var apiPrefix: String = "/"

    @Option(name: [.customShort("w"), .long], help: "Also serve static files from the given directory under the specified prefix.")
    var www: String?

    @Option(name: [.customShort("P"), .long], help: "Prefix to serve static files under, if static file directory is specified.")
    var wwwPrefix: String = "/static/"

    @Option(help: "Regular expression for hosts that the proxy should accept.")
    var acceptHosts: String = RequestFilter.defaultAcceptHosts

    @Option(help: "Regular expression for paths that the proxy should accept.")
    var acceptPaths: String = RequestFilter.defaultAcceptPaths

    @Option(help: "Regular expression for paths that the proxy should reject. Paths specified here will be rejected even accepted by --accept-paths.")
    var rejectPaths: String = RequestFilter.defaultRejectPaths

    @Option(help: "Regular expression for HTTP methods that the proxy should reject (example --reject-methods='POST,PUT,PATCH').")
    var rejectMethods: String = RequestFilter.defaultRejectMethods

    @Option(help: "Regular expressions (comma-separated, as --accept-hosts) for browser origins allowed to make cross-origin requests through the proxy: WebSocket/SPDY upgrades, methods other than GET, HEAD and OPTIONS, and cross-site fetches. Empty: no origin is trusted.")
    var acceptOrigins: String = RequestFilter.defaultAcceptOrigins

    @Flag(help: "If true, disable request filtering in the proxy. This is dangerous, and can leave you vulnerable to XSRF attacks, when used with an accessible port.")
    var disableFilter = false

    @Option(help: "keepalive specifies the keep-alive period for an active network connection. Set to 0 to use the default (15s), a negative value to disable keep-alive. Applies to upgrade connections (exec, attach, port-forward), as in kubectl.")
    var keepalive: String = "0s"

    @Flag(help: "If true, enables automatic path appending of the kube context server path to each request.")
    var appendServerPath = false

    // MARK: kubectl global flags

    @Option(help: "Path to the kubeconfig file to use for CLI requests.")
    var kubeconfig: String?

    @Option(help: "The name of the kubeconfig context to use.")
    var context: String?

    @Option(help: "The name of the kubeconfig cluster to use.")
    var cluster: String?

    @Option(help: "The name of the kubeconfig user to use.")
    var user: String?

    @Option(name: [.short, .long], help: "The address and port of the Kubernetes API server.")
    var server: String?

    @Option(help: "Bearer token for authentication to the API server.")
    var token: String?

    @Option(help: "Path to a cert file for the certificate authority.")
    var certificateAuthority: String?

    @Option(help: "Path to a client certificate file for TLS.")
    var clientCertificate: String?

    @Option(help: "Path to a client key file for TLS.")
    var clientKey: String?

    @Flag(help: "If true, the server's certificate will not be checked for validity. This will make your HTTPS connections insecure.")
    var insecureSkipTlsVerify = false

    @Option(help: "Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used.")
    var tlsServerName: String?

    @Option(help: "Username for basic authentication to the API server.")
    var username: String?

    @Option(help: "Password for basic authentication to the API server.")
    var password: String?

    @Option(name: .customLong("as"), help: "Username to impersonate for the operation.")
    var asUser: String?

    @Option(name: .customLong("as-group"), help: "Group to impersonate for the operation; repeat for several groups.")
    var asGroup: [String] = []

    @Option(name: .customLong("as-uid"), help: "UID to impersonate for the operation.")
    var asUID: String?

    // MARK: proxyd's own

    @Option(name: [.customShort("v"), .customLong("v")], help: "Log level number, as kubectl's -v: 0 warnings, 3 filter decisions, 6 debug.")
    var verbosity: Int = 0

    @Flag(help: "Log one line per request (method, path, status, bytes, duration).")
    var accessLog = false

    @Option(help: "Number of event loops (default: one per CPU this process may run on).")
    var loops: Int?

    // MARK: hardening (docs/configuration.md, "Who can use the proxy" and "Connection limits")

    @Option(help: "Local users (comma-separated numeric uids, or *) whose connections are served; others get 403. Default: your own uid and root; * with the in-cluster configuration.")
    var acceptUids: String?

    @Option(help: "Most client connections open at once; beyond it new ones get 503 and are closed. Default: half the open-file limit (after raising it to the hard limit), minus a reserve.")
    var maxConnections: Int?

    @Flag(help: "Only let GET, HEAD and OPTIONS through, and no protocol upgrades (exec, attach, port-forward, WebSocket).")
    var readOnly = false

    @Option(help: .hidden)
    var headerTimeout: String?

    @Option(help: .hidden)
    var idleTimeout: String?

    @Option(help: .hidden)
    var bodyTimeout: String?

    // MARK: several apiservers (docs/failover.md)

    @Option(name: .customLong("failover-server"), help: "Another apiserver of the same cluster, e.g. https://10.0.0.2:6443 (repeatable). Verified with the cluster's CA and server name; same credentials.")
    var failoverServers: [String] = []

    @Flag(help: "Also use the apiservers listed in the kubernetes EndpointSlices of the default namespace, kept current with a watch.")
    var discoverApiservers = false

    @Option(help: "With several apiservers: how long a request waits for one to become reachable when none is, before 503.")
    var apiserverWait = "5s"

    @Option(help: "With several apiservers: the longest pause between attempts to reach an unhealthy one (from 250ms, doubling, jittered).")
    var apiserverRetryMax = "10s"

    @Option(help: "With several apiservers: check each one's /readyz at this interval (0: passive health checks only).")
    var apiserverReadyzInterval = "0s"

    mutating func validate() throws {
        guard (0...65535).contains(port) else {
            throw ValidationError("invalid port \(port)")
        }
        if unixSocket != nil && port != 8001 {
            throw ValidationError("cannot set --unix-socket and --port at the same time")
        }
        if let acceptUids, AcceptedUIDs.parse(acceptUids) == nil {
            throw ValidationError("invalid --accept-uids \"\(acceptUids)\": want comma-separated numeric uids, or *")
        }
        if let maxConnections, maxConnections < 1 {
            throw ValidationError("invalid --max-connections \(maxConnections): must be at least 1")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            var level = ProxyCommand.logLevel(forVerbosity: verbosity)
            if accessLog && level > .info { level = .info }  // access lines are logged at info
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "proxyd")
        do throws(StartupError) {
            let configuration = try makeConfiguration(logger: logger)
            try Daemon.run(configuration: configuration, logger: logger)
        } catch {
            Console.writeStderr("error: \(error.message)\n")
            throw ExitCode(1)
        }
    }

    static func logLevel(forVerbosity v: Int) -> Logger.Level {
        switch v {
        case ..<1: return .warning
        case 1...2: return .notice
        case 3...5: return .info
        case 6...8: return .debug
        default: return .trace
        }
    }

    func makeConfiguration(logger: Logger) throws(StartupError) -> ProxyConfiguration {
        guard let keepAliveDuration = GoDuration.parse(keepalive) else {
            throw StartupError(message: "invalid argument \"\(keepalive)\" for \"--keepalive\" flag: time: invalid duration \"\(keepalive)\"")
        }
        let filter: RequestFilter?
        if disableFilter {
            if unixSocket == nil {
                logger.warning("Request filter disabled, your proxy is vulnerable to XSRF attacks, please be cautious")
            }
            filter = nil
        } else {
            do {
                filter = try RequestFilter(
                    acceptHosts: acceptHosts, acceptPaths: acceptPaths, rejectPaths: rejectPaths,
                    rejectMethods: rejectMethods, acceptOrigins: acceptOrigins)
            } catch {
                throw StartupError(message: "\(error)")
            }
        }
        let overrides = KubeconfigOverrides(
            server: server, token: token, certificateAuthority: certificateAuthority,
            clientCertificate: clientCertificate, clientKey: clientKey, tlsServerName: tlsServerName,
            username: username, password: password,
            insecureSkipTLSVerify: insecureSkipTlsVerify ? true : nil,
            impersonateUser: asUser, impersonateGroups: asGroup, impersonateUID: asUID)
        let selection = KubeconfigSelection(context: context, cluster: cluster, user: user)
        let environment = ProcessInfo.processInfo.environment
        var upstream: UpstreamTarget
        do {
            upstream = try UpstreamTargetResolver.resolve(
                explicitPath: kubeconfig, environment: environment, selection: selection, overrides: overrides)
        } catch {
            throw StartupError(message: "\(error)")
        }
        // Without a proxy-url, HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply, as in client-go's default transport.
        if upstream.proxyURL?.isEmpty ?? true {
            do {
                upstream.environmentProxyURL = try EnvironmentProxy.proxyURL(
                    scheme: upstream.scheme, host: upstream.host, port: upstream.port, environment: environment)
            } catch {
                throw StartupError(message: "\(error)")
            }
        }
        if let proxyURL = upstream.effectiveProxyURL, case .success(let endpoint) = ProxyEndpoint.parse(proxyURL) {
            logger.info("Connecting to the apiserver through the proxy \(endpoint)")
        }
        if !upstream.basePath.isEmpty && !appendServerPath {
            logger.warning(
                "Your kube context contains a server path \(upstream.basePath), use --append-server-path to automatically append the path to each request")
        }
        if let www {
            func normalized(_ p: String) -> String {
                var s = p.hasPrefix("/") ? p : "/" + p
                if !s.hasSuffix("/") { s += "/" }
                return s
            }
            if normalized(wwwPrefix) == normalized(apiPrefix) {
                // kubectl panics here (conflicting ServeMux patterns); say what is wrong instead.
                throw StartupError(message: "--www-prefix (\(wwwPrefix)) and --api-prefix (\(apiPrefix)) must differ; for example --www-prefix=/ --api-prefix=/api/")
            }
            if !Console.isDirectory(www) {
                logger.warning("Failed to stat static file directory \(www): not a readable directory")
            }
        }
        let listen: ProxyConfiguration.Listen
        if let fds = SystemdActivation.listenFDs(environment: environment), !fds.isEmpty {
            listen = .inherited(fds: fds)
        } else if let unixSocket {
            listen = .unix(path: unixSocket)
        } else {
            listen = .tcp(address: address, port: UInt16(port))
        }
        var configuration = ProxyConfiguration(
            listen: listen, upstream: upstream, apiPrefix: apiPrefix, appendServerPath: appendServerPath,
            filter: filter, loopCount: loops ?? ProxyConfiguration.defaultLoopCount, accessLog: accessLog)
        configuration.wwwDirectory = www
        // client-go's environment knobs for the HTTP/2 transport.
        let (healthCheck, warnings) = HTTP2HealthCheck.fromEnvironment(environment)
        configuration.http2HealthCheck = healthCheck
        for warning in warnings { logger.warning("\(warning)") }
        if let value = environment["DISABLE_HTTP2"], !value.isEmpty {
            logger.info("HTTP2 has been explicitly disabled")
            configuration.upstream.tls.alpn = ["http/1.1"]
        }
        configuration.wwwPrefix = wwwPrefix
        configuration.readOnly = readOnly
        configuration.maxConnections = maxConnections
        if let acceptUids, let parsed = AcceptedUIDs.parse(acceptUids) {
            configuration.acceptUIDs = parsed
        } else if upstream.inCluster {
            // The containers of a pod often run as different uids; they share the pod's loopback anyway.
            configuration.acceptUIDs = .anyone
        }
        for (flag, text, field) in [
            ("header-timeout", headerTimeout, \ClientTimeouts.header), ("idle-timeout", idleTimeout, \ClientTimeouts.idle),
            ("body-timeout", bodyTimeout, \ClientTimeouts.body),
        ] {
            guard let text else { continue }
            guard let value = GoDuration.parse(text), value > .zero else {
                throw StartupError(message: "invalid argument \"\(text)\" for \"--\(flag)\" flag: want a positive duration")
            }
            configuration.clientTimeouts[keyPath: field] = value
        }
        configuration.failover = try failoverConfiguration()
        // Go's net.Dialer: 0 means the default 15 s, negative means off.
        if keepAliveDuration < .zero {
            configuration.upgradeKeepAlive = nil
        } else {
            configuration.upgradeKeepAlive = keepAliveDuration == .zero ? .seconds(15) : keepAliveDuration
        }
        return configuration
    }
}

extension ProxyCommand {
    /// The several-apiservers flags, checked.
    func failoverConfiguration() throws(StartupError) -> FailoverConfiguration {
        func duration(_ text: String, flag: String, positive: Bool) throws(StartupError) -> Duration {
            guard let value = GoDuration.parse(text) else {
                throw StartupError(message: "invalid argument \"\(text)\" for \"--\(flag)\" flag: time: invalid duration \"\(text)\"")
            }
            guard value >= .zero, !positive || value > .zero else {
                throw StartupError(message: "invalid argument \"\(text)\" for \"--\(flag)\" flag: must be \(positive ? "positive" : "0 or more")")
            }
            return value
        }
        var failover = FailoverConfiguration(servers: failoverServers, discover: discoverApiservers)
        failover.wait = try duration(apiserverWait, flag: "apiserver-wait", positive: false)
        failover.backoff.maximum = try duration(apiserverRetryMax, flag: "apiserver-retry-max", positive: true)
        failover.backoff.initial = min(failover.backoff.initial, failover.backoff.maximum)
        failover.backoff.whileWaiting = min(failover.backoff.whileWaiting, failover.backoff.maximum)
        let interval = try duration(apiserverReadyzInterval, flag: "apiserver-readyz-interval", positive: false)
        failover.readyzInterval = interval == .zero ? nil : interval
        return failover
    }
}

struct StartupError: Error {
    let message: String
}
