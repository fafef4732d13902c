/// The configuration of a pod's service account (client-go `rest.InClusterConfig`), for running as a sidecar.
public enum InClusterConfig {
    public static let defaultTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    public static let defaultCAPath = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

    /// Whether an in-cluster configuration is possible (client-go `Possible`): both service variables set and the
    /// token file present and not a directory.
    public static func isPossible(environment: [String: String], tokenPath: String = defaultTokenPath) -> Bool {
        environment["KUBERNETES_SERVICE_HOST"].nonEmpty != nil && environment["KUBERNETES_SERVICE_PORT"].nonEmpty != nil
            && ConfigFiles.existence(tokenPath) == .present
    }

    /// Builds the target `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (IPv6 host bracketed in the
    /// authority) with the service-account token and CA.
    ///
    /// The token is read now (into `bearerToken`) and `tokenFile` is set, so the caller re-reads it: kubelet
    /// rotates bound tokens. Of the overrides, only `server`, `token` and `certificateAuthority` apply, and each
    /// replaces the in-cluster value (client-go `inClusterClientConfig`).
    ///
    /// Deviation from client-go: an unreadable CA file is an error here (client-go logs it and falls back to the
    /// system roots, which then fail verification with a less helpful message). `--certificate-authority` replaces
    /// the file.
    ///
    /// - Throws: `ConfigError` of kind `.notInCluster` when the variables or the token file are missing, or
    ///   `.unreadableFile`/`.invalidValue` for a bad token or CA file.
    public static func load(
        environment: [String: String],
        tokenPath: String = defaultTokenPath,
        caPath: String = defaultCAPath,
        overrides: KubeconfigOverrides = KubeconfigOverrides(),
        currentDirectory: String? = nil
    ) throws(ConfigError) -> UpstreamTarget {
        let cwd = currentDirectory ?? ConfigFiles.currentDirectory
        guard let host = environment["KUBERNETES_SERVICE_HOST"].nonEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"].nonEmpty
        else {
            throw ConfigError(
                kind: .notInCluster, keyPath: "in-cluster",
                message: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined")
        }
        let serverText: String
        let serverKey: String
        if let server = overrides.server.nonEmpty {
            serverText = server
            serverKey = "--server"
        } else {
            let hostPart = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            serverText = "https://\(hostPart):\(port)"
            serverKey = "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT"
        }
        let server: ServerURL
        switch ServerURL.parse(serverText, defaultTLS: true) {
        case .success(let parsed): server = parsed
        case .failure(let reason):
            throw ConfigError(kind: .invalidValue, keyPath: serverKey, message: reason.text)
        }

        var credentials = StaticCredentials()
        if let token = overrides.token.nonEmpty {
            credentials.bearerToken = token
        } else {
            let path = ConfigFiles.resolve(tokenPath, against: cwd)
            switch ConfigFiles.existence(path) {
            case .missing:
                throw ConfigError(
                    kind: .notInCluster, keyPath: "in-cluster", message: "service-account token \(path) not found")
            case .directory:
                throw ConfigError(
                    kind: .notInCluster, keyPath: "in-cluster", message: "service-account token \(path) is a directory")
            case .present: break
            }
            switch ConfigFiles.read(path) {
            case .success(let bytes):
                let token = String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace()
                guard !token.isEmpty else {
                    throw ConfigError(kind: .invalidValue, keyPath: "in-cluster", message: "\(path) is empty")
                }
                credentials.bearerToken = token
                credentials.tokenFile = path
            case .failure(let failure):
                throw ConfigError(
                    kind: .unreadableFile, keyPath: "in-cluster", message: "cannot read \(path): \(failure.reason)")
            }
        }

        let caKey = overrides.certificateAuthority.nonEmpty == nil ? "in-cluster" : "--certificate-authority"
        let ca = ConfigFiles.resolve(overrides.certificateAuthority.nonEmpty ?? caPath, against: cwd)
        let caPEM: [UInt8]
        switch ConfigFiles.read(ca) {
        case .success(let bytes): caPEM = bytes
        case .failure(let failure):
            throw ConfigError(kind: .unreadableFile, keyPath: caKey, message: "cannot read \(ca): \(failure.reason)")
        }
        guard TargetResolver.containsPEM(caPEM) else {
            throw ConfigError(kind: .invalidValue, keyPath: caKey, message: "no PEM data found in \(ca)")
        }
        if server.scheme != "https" { credentials = StaticCredentials() }
        // Impersonation flags apply to the service account's identity too (kubectl --as in a pod).
        credentials.impersonateUser = overrides.impersonateUser.nonEmpty
        if credentials.impersonateUser != nil {
            credentials.impersonateGroups = overrides.impersonateGroups
            credentials.impersonateUID = overrides.impersonateUID.nonEmpty
        }
        var target = UpstreamTarget(
            scheme: server.scheme, host: server.host, port: server.port, basePath: server.basePath,
            authority: server.authority,
            tls: TLSConfiguration(caPEM: caPEM, serverName: overrides.tlsServerName.nonEmpty),
            credentials: credentials)
        target.inCluster = true
        return target
    }
}
