/// Where the upstream target comes from, kept so that it can be loaded again on a reload exactly as at start-up:
/// the kubeconfig flags, the selection and override flags, and the environment as proxyd found it.
public struct UpstreamSource: Sendable {
    /// `--kubeconfig`.
    public var explicitPath: String?
    /// The process environment at start-up (`KUBECONFIG`, `HOME`, proxies, in-cluster variables).
    public var environment: [String: String]
    public var selection: KubeconfigSelection
    public var overrides: KubeconfigOverrides
    /// `DISABLE_HTTP2`: offer only `http/1.1`.
    public var disableHTTP2: Bool
    /// Relative paths (flags, `KUBECONFIG` entries) resolve against this directory, the one proxyd started in.
    public var currentDirectory: String

    public init(
        explicitPath: String?, environment: [String: String], selection: KubeconfigSelection,
        overrides: KubeconfigOverrides, currentDirectory: String? = nil
    ) {
        self.explicitPath = explicitPath
        self.environment = environment
        self.selection = selection
        self.overrides = overrides
        disableHTTP2 = !(environment["DISABLE_HTTP2"] ?? "").isEmpty
        self.currentDirectory = currentDirectory ?? ConfigFiles.currentDirectory
    }

    /// Reads the kubeconfig files (or the in-cluster configuration) and resolves the target, with the environment's
    /// proxy when the cluster sets no `proxy-url` (client-go's default transport) and `DISABLE_HTTP2` applied.
    /// - Throws: `ConfigError` (naming the file and field), or `ProxyURLError` for an invalid proxy variable.
    public func load() throws -> UpstreamTarget {
        var upstream = try UpstreamTargetResolver.resolve(
            explicitPath: explicitPath.map { ConfigFiles.resolve($0, against: currentDirectory) },
            environment: environment, selection: selection, overrides: overrides)
        if upstream.proxyURL?.isEmpty ?? true {
            upstream.environmentProxyURL = try EnvironmentProxy.proxyURL(
                scheme: upstream.scheme, host: upstream.host, port: upstream.port, environment: environment)
        }
        if disableHTTP2 {
            upstream.tls.alpn = ["http/1.1"]
        }
        return upstream
    }

    /// The kubeconfig files whose change means a reload: `--kubeconfig`, else every `KUBECONFIG` entry (existing
    /// or not: one created later joins the merge), else `~/.kube/config`. Empty for the in-cluster configuration,
    /// whose token the credential store re-reads on its own.
    public var watchedFiles: [String] {
        if let explicit = explicitPath, !explicit.isEmpty {
            return [ConfigFiles.resolve(explicit, against: currentDirectory)]
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            var seen = Set<String>()
            return list.split(separator: ":").map { ConfigFiles.resolve(String($0), against: currentDirectory) }
                .filter { seen.insert($0).inserted }
        }
        guard let home = environment["HOME"], !home.isEmpty else { return [] }
        return [ConfigFiles.resolve(".kube/config", against: home)]
    }
}
