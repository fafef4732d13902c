/// Several apiservers of one cluster (docs/failover.md): where the others come from and how their health is judged.
///
/// With neither `servers` nor `discover`, proxyd talks to the one server of the kubeconfig exactly as before: no
/// balancer, no waiting, the same errors.
public struct FailoverConfiguration: Sendable, Equatable {
    /// `--failover-server`: further apiservers of the same cluster, as given (`https://10.0.0.2:6443`).
    public var servers: [String]
    /// `--discover-apiservers`: also use the addresses of the `kubernetes` EndpointSlices in `default`.
    public var discover: Bool
    /// `--apiserver-wait`: how long a new request waits for a reachable apiserver when none is, before 503.
    public var wait: Duration
    /// `--apiserver-readyz-interval`: check every apiserver's `/readyz` this often; `nil` for passive checks only.
    public var readyzInterval: Duration?
    /// Pauses between attempts to reach an unhealthy apiserver (`--apiserver-retry-max` sets `backoff.maximum`).
    public var backoff: HealthBackoff

    public init(
        servers: [String] = [], discover: Bool = false, wait: Duration = .seconds(5), readyzInterval: Duration? = nil,
        backoff: HealthBackoff = HealthBackoff()
    ) {
        self.servers = servers
        self.discover = discover
        self.wait = wait
        self.readyzInterval = readyzInterval
        self.backoff = backoff
    }

    /// Whether more than the kubeconfig's server may be used (and so the balancer runs).
    public var isEnabled: Bool { !servers.isEmpty || discover }

    /// The targets of the configured servers: the primary first, then each `--failover-server`.
    ///
    /// Every one is the primary with another address: same scheme, base path, CA, client identity, credentials and
    /// proxy; TLS verifies the primary's server name (its `tls-server-name`, else its host), since apiserver
    /// certificates name the cluster, not always each node's address.
    /// - Throws: `FailoverError` naming the flag and the value when a URL is invalid or does not fit the primary.
    public static func targets(primary: UpstreamTarget, failoverURLs: [String]) throws(FailoverError) -> [UpstreamTarget] {
        var base = primary
        base.tls.serverName = primary.tls.serverName ?? primary.host
        var targets = [base]
        for text in failoverURLs {
            let url: ServerURL
            switch ServerURL.parse(text, defaultTLS: primary.scheme == "https") {
            case .success(let parsed): url = parsed
            case .failure(let reason): throw FailoverError(value: text, reason: reason.text)
            }
            guard url.scheme == primary.scheme else {
                throw FailoverError(value: text, reason: "the scheme must be the cluster server's (\(primary.scheme))")
            }
            guard url.basePath.isEmpty || url.basePath == primary.basePath else {
                throw FailoverError(value: text, reason: "the path must be empty or the cluster server's (\(primary.basePath))")
            }
            let target = base.withAddress(host: url.host, port: url.port, authority: url.authority)
            if targets.contains(where: { $0.host == target.host && $0.port == target.port }) { continue }
            targets.append(target)
        }
        return targets
    }
}

/// A `--failover-server` value that cannot be used.
public struct FailoverError: Error, Equatable, CustomStringConvertible {
    public let value: String
    public let reason: String

    public var description: String { "invalid --failover-server \"\(value)\": \(reason)" }
}

extension UpstreamTarget {
    /// The same cluster (TLS, credentials, proxy, base path) reached at another address.
    func withAddress(host: String, port: UInt16, authority: String) -> UpstreamTarget {
        var target = self
        target.host = host
        target.port = port
        target.authority = authority
        return target
    }
}
