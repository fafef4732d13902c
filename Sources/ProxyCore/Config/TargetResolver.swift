/// Selection, overrides and validation of one context: the client-go `DirectClientConfig` logic.
///
/// Every value remembers where it came from (a file and key path, or a flag), so errors name it precisely.
struct TargetResolver {
    private let config: Kubeconfig
    private let overrides: KubeconfigOverrides
    private let currentDirectory: String

    private var cluster = KubeconfigCluster(origin: "")
    private var clusterPath: String?
    private var user = KubeconfigUser(origin: "")
    private var userName: String?
    private var userPath: String?
    /// The names behind the selection, for people (`UpstreamTarget.contextName` and the like).
    private var selectedContext: String?
    private var selectedCluster: String?
    private var selectedNamespace: String?
    /// kubeconfig field names whose current value came from a command-line flag.
    private var fromFlags: Set<String> = []

    init(config: Kubeconfig, overrides: KubeconfigOverrides, currentDirectory: String) {
        self.config = config
        self.overrides = overrides
        self.currentDirectory = currentDirectory
    }

    // MARK: Error sources

    private struct Source {
        var file: String?
        var keyPath: String
    }

    private static let flagNames: [String: String] = [
        "server": "--server", "certificate-authority": "--certificate-authority",
        "insecure-skip-tls-verify": "--insecure-skip-tls-verify", "tls-server-name": "--tls-server-name",
        "token": "--token", "client-certificate": "--client-certificate", "client-key": "--client-key",
        "username": "--username", "password": "--password", "as": "--as", "as-groups": "--as-group",
        "as-uid": "--as-uid", "as-user-extra": "--as-user-extra",
    ]

    private var allFiles: String? { config.files.isEmpty ? nil : config.files.joined(separator: ":") }

    private func clusterSource(_ field: String) -> Source {
        if fromFlags.contains(field), let flag = Self.flagNames[field] { return Source(file: nil, keyPath: flag) }
        guard let clusterPath else { return Source(file: nil, keyPath: field) }
        return Source(file: cluster.origin, keyPath: "\(clusterPath).\(field)")
    }

    private func userSource(_ field: String? = nil) -> Source {
        if let field, fromFlags.contains(field), let flag = Self.flagNames[field] {
            return Source(file: nil, keyPath: flag)
        }
        guard let userPath else { return Source(file: nil, keyPath: field.flatMap { Self.flagNames[$0] } ?? "user") }
        return Source(file: user.origin, keyPath: field.map { "\(userPath).\($0)" } ?? userPath)
    }

    private func fail(_ kind: ConfigError.Kind, _ source: Source, _ message: String) -> ConfigError {
        ConfigError(kind: kind, file: source.file, keyPath: source.keyPath, message: message)
    }

    // MARK: Selection

    /// `--context` else `current-context`; then `--cluster`/`--user` else the context's. A referenced context,
    /// cluster or user that does not exist is an error.
    mutating func select(_ selection: KubeconfigSelection) throws(ConfigError) {
        var context: KubeconfigContext?
        var contextName: String?
        if let name = selection.context.nonEmpty {
            guard let found = config.contexts[name] else {
                throw ConfigError(
                    kind: .notFound, file: allFiles, keyPath: "--context", message: "context \"\(name)\" not found")
            }
            context = found
            contextName = name
        } else if let name = config.currentContext {
            guard let found = config.contexts[name] else {
                throw ConfigError(
                    kind: .notFound, file: config.currentContextOrigin, keyPath: "current-context",
                    message: "context \"\(name)\" not found")
            }
            context = found
            contextName = name
        }
        let contextPath = contextName.map { "contexts[\($0)].context" }
        selectedContext = contextName
        selectedNamespace = context?.namespace

        if let name = selection.cluster.nonEmpty {
            guard let found = config.clusters[name] else {
                throw ConfigError(
                    kind: .notFound, file: allFiles, keyPath: "--cluster", message: "cluster \"\(name)\" not found")
            }
            cluster = found
            clusterPath = "clusters[\(name)].cluster"
            selectedCluster = name
        } else if let context, let contextPath, let name = context.cluster {
            guard let found = config.clusters[name] else {
                throw ConfigError(
                    kind: .notFound, file: context.origin, keyPath: "\(contextPath).cluster",
                    message: "cluster \"\(name)\" not found")
            }
            cluster = found
            clusterPath = "clusters[\(name)].cluster"
            selectedCluster = name
        } else if overrides.server.nonEmpty == nil {
            if let context, let contextPath {
                throw ConfigError(
                    kind: .invalidValue, file: context.origin, keyPath: "\(contextPath).cluster", message: "missing")
            }
            throw ConfigError(
                kind: .invalidValue, file: allFiles, keyPath: "current-context",
                message: "not set, and none of --context, --cluster or --server given")
        }

        if let name = selection.user.nonEmpty {
            guard let found = config.users[name] else {
                throw ConfigError(
                    kind: .notFound, file: allFiles, keyPath: "--user", message: "user \"\(name)\" not found")
            }
            user = found
            userName = name
        } else if let context, let contextPath, let name = context.user {
            guard let found = config.users[name] else {
                throw ConfigError(
                    kind: .notFound, file: context.origin, keyPath: "\(contextPath).user",
                    message: "user \"\(name)\" not found")
            }
            user = found
            userName = name
        }
        userPath = userName.map { "users[\($0)].user" }
    }

    // MARK: Overrides

    /// kubectl's override semantics (client-go `getCluster`/`getAuthInfo`), plus `--token` and
    /// `--username`/`--password` replacing the other kinds of authentication.
    mutating func applyOverrides() {
        let o = overrides
        if let server = o.server.nonEmpty {
            cluster.server = server
            fromFlags.insert("server")
            // client-go: --server also replaces tls-server-name with the flag's value (usually clearing it).
            cluster.tlsServerName = o.tlsServerName.nonEmpty
            fromFlags.insert("tls-server-name")
        } else if let name = o.tlsServerName.nonEmpty {
            cluster.tlsServerName = name
            fromFlags.insert("tls-server-name")
        }
        let caFlag = o.certificateAuthority.nonEmpty
        if o.insecureSkipTLSVerify == true || caFlag != nil {
            // client-go: either flag replaces the CA file, CA data and insecure flag together.
            cluster.insecureSkipTLSVerify = o.insecureSkipTLSVerify ?? false
            cluster.certificateAuthority = caFlag.map { ConfigFiles.resolve($0, against: currentDirectory) }
            cluster.certificateAuthorityData = nil
            fromFlags.formUnion(["insecure-skip-tls-verify", "certificate-authority"])
        }

        let token = o.token.nonEmpty
        let username = o.username.nonEmpty
        let password = o.password.nonEmpty
        if token != nil || username != nil || password != nil {
            user.tokenFile = nil
            user.exec = nil
            user.authProvider = nil
            if token != nil, username == nil, password == nil {
                user.username = nil
                user.password = nil
            }
            if username != nil || password != nil { user.token = nil }
        }
        if let token {
            user.token = token
            fromFlags.insert("token")
        }
        if let username {
            user.username = username
            fromFlags.insert("username")
        }
        if let password {
            user.password = password
            fromFlags.insert("password")
        }
        if let path = o.clientCertificate.nonEmpty {
            user.clientCertificate = ConfigFiles.resolve(path, against: currentDirectory)
            user.clientCertificateData = nil
            fromFlags.insert("client-certificate")
        }
        if let path = o.clientKey.nonEmpty {
            user.clientKey = ConfigFiles.resolve(path, against: currentDirectory)
            user.clientKeyData = nil
            fromFlags.insert("client-key")
        }
        if let name = o.impersonateUser.nonEmpty {
            user.impersonate = name
            fromFlags.insert("as")
        }
        if !o.impersonateGroups.isEmpty {
            user.impersonateGroups = o.impersonateGroups
            fromFlags.insert("as-groups")
        }
        if let uid = o.impersonateUID.nonEmpty {
            user.impersonateUID = uid
            fromFlags.insert("as-uid")
        }
        if !o.impersonateExtra.isEmpty {
            user.impersonateUserExtra = o.impersonateExtra
            fromFlags.insert("as-user-extra")
        }
    }

    // MARK: Validation and result

    func build() throws(ConfigError) -> UpstreamTarget {
        // Cluster.
        guard let serverText = cluster.server else { throw fail(.invalidValue, clusterSource("server"), "missing") }
        let hasCA = cluster.certificateAuthority != nil || cluster.certificateAuthorityData != nil
        let hasCert = user.clientCertificate != nil || user.clientCertificateData != nil
        let defaultTLS = hasCA || hasCert || cluster.insecureSkipTLSVerify || cluster.tlsServerName != nil
        let server: ServerURL
        switch ServerURL.parse(serverText, defaultTLS: defaultTLS) {
        case .success(let parsed): server = parsed
        case .failure(let reason): throw fail(.invalidValue, clusterSource("server"), reason.text)
        }
        if let proxyURL = cluster.proxyURL, let reason = Self.proxyURLProblem(proxyURL) {
            throw fail(.invalidValue, clusterSource("proxy-url"), reason)
        }
        if cluster.certificateAuthority != nil && cluster.certificateAuthorityData != nil {
            throw fail(
                .conflict, clusterSource("certificate-authority"),
                "certificate-authority and certificate-authority-data are both specified; only one is allowed")
        }
        var caPEM = cluster.certificateAuthorityData
        if let path = cluster.certificateAuthority {
            caPEM = try readPEM(path, clusterSource("certificate-authority"))
        } else if let data = caPEM, !Self.containsPEM(data) {
            throw fail(.invalidValue, clusterSource("certificate-authority-data"), "no PEM data found")
        }
        if hasCA && cluster.insecureSkipTLSVerify {
            throw fail(
                .conflict, clusterSource("insecure-skip-tls-verify"),
                "specifying a root certificates file with the insecure flag is not allowed")
        }

        // User.
        var certPEM: [UInt8]?
        var keyPEM: [UInt8]?
        if hasCert {
            if user.clientCertificate != nil && user.clientCertificateData != nil {
                throw fail(
                    .conflict, userSource("client-certificate"),
                    "client-certificate and client-certificate-data are both specified; only one is allowed")
            }
            if user.clientKey != nil && user.clientKeyData != nil {
                throw fail(
                    .conflict, userSource("client-key"),
                    "client-key and client-key-data are both specified; only one is allowed")
            }
            if user.clientKey == nil && user.clientKeyData == nil {
                throw fail(.invalidValue, userSource("client-key"), "missing (client-certificate is set)")
            }
            certPEM = user.clientCertificateData
            if let path = user.clientCertificate {
                certPEM = try readPEM(path, userSource("client-certificate"))
            } else if let data = certPEM, !Self.containsPEM(data) {
                throw fail(.invalidValue, userSource("client-certificate-data"), "no PEM data found")
            }
            keyPEM = user.clientKeyData
            if let path = user.clientKey {
                keyPEM = try readPEM(path, userSource("client-key"))
            } else if let data = keyPEM, !Self.containsPEM(data) {
                throw fail(.invalidValue, userSource("client-key-data"), "no PEM data found")
            }
        }
        let displayName = userName ?? "the command-line user"
        var exec: ExecConfig?
        if let raw = user.exec {
            if user.authProvider != nil {
                throw fail(
                    .conflict, userSource(),
                    "auth-provider cannot be provided in combination with an exec plugin for \(displayName)")
            }
            exec = try validateExec(raw)
        }
        var methods: [String] = []
        if user.token != nil { methods.append("token") }
        if user.username != nil || user.password != nil { methods.append("basicAuth") }
        if methods.count > 1 {
            let source = fromFlags.contains("token") ? userSource("token") : userSource()
            throw fail(
                .conflict, source,
                "more than one authentication method found for \(displayName); found [\(methods.joined(separator: " "))], only one is allowed"
            )
        }
        if user.impersonate == nil
            && (user.impersonateUID != nil || !user.impersonateGroups.isEmpty || !user.impersonateUserExtra.isEmpty)
        {
            let source =
                fromFlags.contains("as-groups")
                ? userSource("as-groups")
                : fromFlags.contains("as-uid")
                    ? userSource("as-uid") : fromFlags.contains("as-user-extra") ? userSource("as-user-extra") : userSource("as")
            throw fail(
                .invalidValue, source, "requesting uid, groups or user-extra without impersonating a user (as)")
        }

        let https = server.scheme == "https"
        var bearerToken = user.token
        if https, bearerToken == nil, let path = user.tokenFile {
            // An unreadable or empty file does not stop proxyd: the credential store reports it (requests get a
            // 503 `Status` saying so) and re-reads the file until it holds a token.
            bearerToken = try? readToken(path, userSource("tokenFile"))
        }
        if user.token != nil || user.tokenFile != nil || user.username != nil || user.password != nil || hasCert {
            exec = nil  // client-go's exec authenticator steps aside when other credentials are configured.
        }

        var credentials = StaticCredentials(
            impersonateUser: user.impersonate, impersonateGroups: user.impersonateGroups,
            impersonateUID: user.impersonateUID, impersonateExtra: user.impersonateUserExtra)
        var tls = TLSConfiguration(
            caPEM: caPEM, insecureSkipVerify: cluster.insecureSkipTLSVerify, serverName: cluster.tlsServerName)
        if https {
            credentials.bearerToken = bearerToken
            credentials.tokenFile = user.tokenFile
            credentials.username = user.username
            credentials.password = user.password
            credentials.exec = exec
            credentials.authProvider = user.authProvider?.name
            credentials.authProviderConfig = user.authProvider?.config ?? [:]
            tls.clientCertificatePEM = certPEM
            tls.clientKeyPEM = keyPEM
        }
        var target = UpstreamTarget(
            scheme: server.scheme, host: server.host, port: server.port, basePath: server.basePath,
            authority: server.authority, tls: tls, credentials: credentials, proxyURL: cluster.proxyURL,
            disableCompression: cluster.disableCompression)
        target.contextName = selectedContext
        target.clusterName = selectedCluster
        target.userName = userName
        target.namespace = selectedNamespace
        if https && hasCert {
            target.clientCertificateFile = user.clientCertificate
            target.clientKeyFile = user.clientKey
        }
        return target
    }

    private func validateExec(_ raw: KubeconfigExec) throws(ConfigError) -> ExecConfig {
        guard let command = raw.command else { throw fail(.invalidValue, userSource("exec.command"), "missing") }
        guard let apiVersion = raw.apiVersion else {
            throw fail(.invalidValue, userSource("exec.apiVersion"), "missing")
        }
        for (index, variable) in raw.env.enumerated() where variable.name.isEmpty {
            throw fail(.invalidValue, userSource("exec.env[\(index)].name"), "missing")
        }
        let mode: ExecConfig.InteractiveMode
        if let text = raw.interactiveMode {
            guard let parsed = ExecConfig.InteractiveMode(rawValue: text) else {
                throw fail(
                    .invalidValue, userSource("exec.interactiveMode"),
                    "invalid value \"\(text)\" (want Never, IfAvailable or Always)")
            }
            mode = parsed
        } else if apiVersion == "client.authentication.k8s.io/v1beta1" {
            mode = .ifAvailable  // client-go's default for v1beta1
        } else {
            throw fail(.invalidValue, userSource("exec.interactiveMode"), "missing (required for \(apiVersion))")
        }
        return ExecConfig(
            apiVersion: apiVersion, command: command, args: raw.args, env: raw.env, installHint: raw.installHint,
            provideClusterInfo: raw.provideClusterInfo, interactiveMode: mode)
    }

    private func read(_ path: String, _ source: Source) throws(ConfigError) -> [UInt8] {
        switch ConfigFiles.read(path) {
        case .success(let bytes): return bytes
        case .failure(let failure):
            throw fail(.unreadableFile, source, "cannot read \(path): \(failure.reason)")
        }
    }

    private func readPEM(_ path: String, _ source: Source) throws(ConfigError) -> [UInt8] {
        let bytes = try read(path, source)
        guard Self.containsPEM(bytes) else { throw fail(.invalidValue, source, "no PEM data found in \(path)") }
        return bytes
    }

    private func readToken(_ path: String, _ source: Source) throws(ConfigError) -> String {
        let bytes = try read(path, source)
        let token = String(decoding: bytes, as: UTF8.self).trimmingASCIIWhitespace()
        guard !token.isEmpty else { throw fail(.invalidValue, source, "\(path) is empty") }
        return token
    }

    static func containsPEM(_ bytes: [UInt8]) -> Bool {
        let marker = Array("-----BEGIN ".utf8)
        guard bytes.count >= marker.count else { return false }
        for start in 0...(bytes.count - marker.count) where bytes[start] == marker[0] {
            if bytes[start..<(start + marker.count)].elementsEqual(marker) { return true }
        }
        return false
    }

    /// client-go `parseProxyURL`: http, https or socks5 with a host (and a usable port and user information, which
    /// proxyd needs to dial it). The reason never echoes the URL (it may hold credentials).
    static func proxyURLProblem(_ text: String) -> String? {
        switch ProxyEndpoint.parse(text) {
        case .success: return nil
        case .failure(let error): return error.reason
        }
    }
}

extension String {
    /// Trims spaces, tabs, CR and LF from both ends (Go's `strings.TrimSpace` for ASCII).
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
