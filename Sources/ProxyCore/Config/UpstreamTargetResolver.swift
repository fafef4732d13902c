/// Where proxyd's upstream comes from, in kubectl's order: kubeconfig (flag, `KUBECONFIG`, `~/.kube/config`),
/// else the in-cluster service account. Unlike kubectl, no configuration at all is an error, never a silent
/// proxy to `http://localhost:8080`.
public enum UpstreamTargetResolver {
    /// Environment variable naming a folder that replaces `/var/run/secrets/kubernetes.io/serviceaccount`
    /// (for tests and unusual mounts).
    public static let serviceAccountDirVariable = "PROXYD_SERVICE_ACCOUNT_DIR"

    public static func resolve(
        explicitPath: String?,
        environment: [String: String],
        selection: KubeconfigSelection,
        overrides: KubeconfigOverrides
    ) throws(ConfigError) -> UpstreamTarget {
        var tokenPath = InClusterConfig.defaultTokenPath
        var caPath = InClusterConfig.defaultCAPath
        if let dir = environment[serviceAccountDirVariable], !dir.isEmpty {
            tokenPath = dir + "/token"
            caPath = dir + "/ca.crt"
        }
        // In a pod with no kubeconfig, flags such as --server or --as apply on top of the service account
        // (client-go's in-cluster config plus overrides), instead of replacing it with an anonymous target.
        if explicitPath == nil, selection.context == nil, selection.cluster == nil, selection.user == nil,
            InClusterConfig.isPossible(environment: environment, tokenPath: tokenPath),
            let files = try? KubeconfigLoader.loadFiles(explicitPath: nil, environment: environment),
            files.config.isEmpty
        {
            return try InClusterConfig.load(
                environment: environment, tokenPath: tokenPath, caPath: caPath, overrides: overrides)
        }
        do {
            return try KubeconfigLoader.load(
                explicitPath: explicitPath, environment: environment, selection: selection, overrides: overrides)
        } catch where error.kind == .noConfiguration {
            if InClusterConfig.isPossible(environment: environment, tokenPath: tokenPath) {
                return try InClusterConfig.load(
                    environment: environment, tokenPath: tokenPath, caPath: caPath, overrides: overrides)
            }
            throw ConfigError(
                kind: .noConfiguration,
                message: "\(error.message), and not running inside a cluster (KUBERNETES_SERVICE_HOST is not set); "
                    + "pass --kubeconfig or --server",
                lookedFor: error.lookedFor)
        }
    }
}
