/// The resolved target of the proxy: what the data path needs, with no YAML left.
///
/// Credentials are only ever present for an `https` server: resolution drops bearer token, token file, basic auth,
/// exec, auth-provider and the client certificate for `http` (client-go attaches none of them to a plain-HTTP
/// server). Impersonation is kept for `http`, as client-go does. `sendsCredentials` states the rule for callers.
///
/// `description`/`debugDescription` redact every secret; do not log the fields one by one.
public struct UpstreamTarget: Sendable, Equatable {
    /// "https" or "http".
    public var scheme: String
    /// DNS name or IP literal, without brackets.
    public var host: String
    /// From the URL, else 443 for https and 80 for http.
    public var port: UInt16
    /// The path of the server URL without its trailing "/"; "" for none or "/".
    public var basePath: String
    /// The `Host`/`:authority` value: the URL's host[:port] exactly as written (IPv6 bracketed, port only if given).
    public var authority: String
    /// CA, insecure flag, client certificate and key (PEM bytes), server name, ALPN `["h2", "http/1.1"]`.
    public var tls: TLSConfiguration
    public var credentials: StaticCredentials
    /// The proxy every upstream connection goes through: the cluster's `proxy-url` (validated: http, https or
    /// socks5), or what `EnvironmentProxy` found in `HTTPS_PROXY`/`NO_PROXY`. Parsed by `ProxyEndpoint`.
    public var proxyURL: String?
    /// From `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` when the cluster sets no `proxy-url`. Kept apart from `proxyURL`
    /// because exec plugins are told only the kubeconfig's `proxy-url` (client-go).
    public var environmentProxyURL: String?
    /// The proxy every upstream connection goes through, if any.
    public var effectiveProxyURL: String? {
        if let proxyURL, !proxyURL.isEmpty { return proxyURL }
        if let environmentProxyURL, !environmentProxyURL.isEmpty { return environmentProxyURL }
        return nil
    }
    public var disableCompression: Bool
    /// Absolute paths of the client certificate and key when they came from files (not `-data`): re-read while
    /// proxyd runs, so a rotated identity is used by new upstream connections.
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    /// Whether this is the pod's in-cluster configuration (service account), not a kubeconfig.
    public var inCluster = false
    /// The kubeconfig names behind this target, for people (the service index page): the context, cluster and user
    /// used, and the context's namespace. `nil` when there is none (in-cluster, `--server` without a context).
    public var contextName: String?
    public var clusterName: String?
    public var userName: String?
    public var namespace: String?

    public init(
        scheme: String, host: String, port: UInt16, basePath: String = "", authority: String,
        tls: TLSConfiguration = TLSConfiguration(), credentials: StaticCredentials = StaticCredentials(),
        proxyURL: String? = nil, disableCompression: Bool = false
    ) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
        self.authority = authority
        self.tls = tls
        self.credentials = credentials
        self.proxyURL = proxyURL
        self.disableCompression = disableCompression
    }

    /// Whether authentication credentials may be attached to requests: only over TLS (client-go
    /// `IsConfigTransportTLS`). Resolution already drops them for `http`; this states the rule for callers.
    public var sendsCredentials: Bool { scheme == "https" }

    /// The server URL as it is used (scheme, authority, base path).
    public var serverURL: String { "\(scheme)://\(authority)\(basePath)" }
}

/// Static credential material from the kubeconfig user (after overrides). Contains secrets: its description redacts
/// them.
public struct StaticCredentials: Sendable, Equatable {
    /// `token`, or the token file's content (whitespace-trimmed) at load time when only `tokenFile` is set.
    public var bearerToken: String?
    /// Absolute path; when set, it is the source of truth and should be re-read (client-go: about every 60 s, last
    /// good value kept on failure).
    public var tokenFile: String?
    public var username: String?
    public var password: String?
    public var impersonateUser: String?
    public var impersonateGroups: [String]
    public var impersonateUID: String?
    public var impersonateExtra: [String: [String]]
    /// Set only when no token, token file, basic auth or client certificate is configured (client-go ignores exec
    /// in that case).
    public var exec: ExecConfig?
    /// `auth-provider` name, for a clear "unsupported" message later.
    public var authProvider: String?
    /// `auth-provider` config map (secrets).
    public var authProviderConfig: [String: String]

    public init(
        bearerToken: String? = nil, tokenFile: String? = nil, username: String? = nil, password: String? = nil,
        impersonateUser: String? = nil, impersonateGroups: [String] = [], impersonateUID: String? = nil,
        impersonateExtra: [String: [String]] = [:], exec: ExecConfig? = nil, authProvider: String? = nil,
        authProviderConfig: [String: String] = [:]
    ) {
        self.bearerToken = bearerToken
        self.tokenFile = tokenFile
        self.username = username
        self.password = password
        self.impersonateUser = impersonateUser
        self.impersonateGroups = impersonateGroups
        self.impersonateUID = impersonateUID
        self.impersonateExtra = impersonateExtra
        self.exec = exec
        self.authProvider = authProvider
        self.authProviderConfig = authProviderConfig
    }

    /// Whether any authentication (not counting impersonation) is configured.
    public var isEmpty: Bool {
        bearerToken == nil && tokenFile == nil && username == nil && password == nil && exec == nil
            && authProvider == nil
    }
}

// MARK: - Redacting descriptions

private let redacted = "<redacted>"

extension StaticCredentials: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        var parts: [String] = []
        if bearerToken != nil { parts.append("bearerToken: \(redacted)") }
        if let tokenFile { parts.append("tokenFile: \(tokenFile)") }
        if let username { parts.append("username: \(username)") }
        if password != nil { parts.append("password: \(redacted)") }
        if let impersonateUser { parts.append("impersonateUser: \(impersonateUser)") }
        if !impersonateGroups.isEmpty { parts.append("impersonateGroups: \(impersonateGroups)") }
        if let impersonateUID { parts.append("impersonateUID: \(impersonateUID)") }
        if !impersonateExtra.isEmpty { parts.append("impersonateExtra: \(impersonateExtra.keys.sorted())") }
        if let exec { parts.append("exec: \(exec)") }
        if let authProvider {
            parts.append("authProvider: \(authProvider) config: \(authProviderConfig.keys.sorted())")
        }
        return "StaticCredentials(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }
}

extension ExecConfig: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "ExecConfig(apiVersion: \(apiVersion), command: \(command), args: \(args.count), "
            + "env: \(env.map(\.name)), interactiveMode: \(interactiveMode.rawValue), "
            + "provideClusterInfo: \(provideClusterInfo))"
    }

    public var debugDescription: String { description }
}

extension ExecConfig.EnvVar: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "\(name)=\(redacted)" }
    public var debugDescription: String { description }
}

extension KubeconfigExec: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        "KubeconfigExec(apiVersion: \(apiVersion ?? "-"), command: \(command ?? "-"), args: \(args.count), "
            + "env: \(env.map(\.name)), interactiveMode: \(interactiveMode ?? "-"))"
    }

    public var debugDescription: String { description }
}

extension AuthProviderConfig: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "AuthProviderConfig(name: \(name), config: \(config.keys.sorted()))" }
    public var debugDescription: String { description }
}

extension UpstreamTarget: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        var tlsParts: [String] = []
        if let ca = tls.caPEM { tlsParts.append("ca: \(ca.count) bytes") }
        if tls.insecureSkipVerify { tlsParts.append("insecure") }
        if tls.clientCertificatePEM != nil { tlsParts.append("client certificate") }
        if tls.clientKeyPEM != nil { tlsParts.append("client key: \(redacted)") }
        if let name = tls.serverName { tlsParts.append("serverName: \(name)") }
        var parts = ["\(serverURL)", "tls: [\(tlsParts.joined(separator: ", "))]", "credentials: \(credentials)"]
        if let proxyURL { parts.append("proxyURL: \(redactingUserInfo(proxyURL))") }
        if let environmentProxyURL { parts.append("environmentProxyURL: \(redactingUserInfo(environmentProxyURL))") }
        if disableCompression { parts.append("disableCompression") }
        return "UpstreamTarget(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }
}

extension KubeconfigUser: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        var parts = ["origin: \(origin)"]
        if let clientCertificate { parts.append("client-certificate: \(clientCertificate)") }
        if clientCertificateData != nil { parts.append("client-certificate-data: \(redacted)") }
        if let clientKey { parts.append("client-key: \(clientKey)") }
        if clientKeyData != nil { parts.append("client-key-data: \(redacted)") }
        if token != nil { parts.append("token: \(redacted)") }
        if let tokenFile { parts.append("tokenFile: \(tokenFile)") }
        if let username { parts.append("username: \(username)") }
        if password != nil { parts.append("password: \(redacted)") }
        if let impersonate { parts.append("as: \(impersonate)") }
        if let exec { parts.append("exec: \(exec)") }
        if let authProvider { parts.append("auth-provider: \(authProvider)") }
        return "KubeconfigUser(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }
}

/// `http://user:pass@proxy:3128` → `http://<redacted>@proxy:3128`.
func redactingUserInfo(_ url: String) -> String {
    guard let schemeEnd = url.range(ofText: "://") else { return url }
    let rest = url[schemeEnd.upperBound...]
    let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
    guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
    return String(url[..<schemeEnd.upperBound]) + redacted + String(url[at...])
}
