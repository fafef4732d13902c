/// The kubectl selection flags `--context`, `--cluster` and `--user`.
public struct KubeconfigSelection: Sendable, Equatable {
    public var context: String?
    public var cluster: String?
    public var user: String?

    public init(context: String? = nil, cluster: String? = nil, user: String? = nil) {
        self.context = context
        self.cluster = cluster
        self.user = user
    }
}

/// The kubectl global flags that override the selected cluster and user, applied after selection with kubectl's
/// semantics (client-go `DirectClientConfig.getCluster`/`getAuthInfo`). Empty strings count as "not given".
///
/// - `server`: replaces the cluster's server, and also replaces its `tls-server-name` with `tlsServerName`
///   (so a file's tls-server-name is cleared unless `--tls-server-name` is given too).
/// - `certificateAuthority` (path) or `insecureSkipTLSVerify == true`: replace the cluster's CA file, CA data and
///   insecure flag together. `insecureSkipTLSVerify == false` changes nothing (as in kubectl).
/// - `token`: replaces all other authentication of the user (token file, basic auth, exec, auth-provider); a client
///   certificate stays. Together with `username`/`password` it is an error.
/// - `username`/`password`: replace token, token file, exec and auth-provider; each replaces its own field.
/// - `clientCertificate`/`clientKey` (paths): each replaces both the file and the data form of its field.
/// - `impersonateUser`, `impersonateGroups` (non-empty replaces the list), `impersonateUID`, `impersonateExtra`
///   (`--as-user-extra key=value`, repeatable; non-empty replaces the map): replace their fields.
///
/// Relative paths are resolved against the current working directory.
public struct KubeconfigOverrides: Sendable, Equatable {
    public var server: String?
    public var token: String?
    public var certificateAuthority: String?
    public var clientCertificate: String?
    public var clientKey: String?
    public var tlsServerName: String?
    public var username: String?
    public var password: String?
    public var insecureSkipTLSVerify: Bool?
    public var impersonateUser: String?
    public var impersonateGroups: [String]
    public var impersonateUID: String?
    public var impersonateExtra: [String: [String]]

    public init(
        server: String? = nil, token: String? = nil, certificateAuthority: String? = nil,
        clientCertificate: String? = nil, clientKey: String? = nil, tlsServerName: String? = nil,
        username: String? = nil, password: String? = nil, insecureSkipTLSVerify: Bool? = nil,
        impersonateUser: String? = nil, impersonateGroups: [String] = [], impersonateUID: String? = nil,
        impersonateExtra: [String: [String]] = [:]
    ) {
        self.server = server
        self.token = token
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.tlsServerName = tlsServerName
        self.username = username
        self.password = password
        self.insecureSkipTLSVerify = insecureSkipTLSVerify
        self.impersonateUser = impersonateUser
        self.impersonateGroups = impersonateGroups
        self.impersonateUID = impersonateUID
        self.impersonateExtra = impersonateExtra
    }

    /// Parses `--as-user-extra` values (`key=value`; the value may contain `=`; repeat a key for several values).
    /// - Throws: `ConfigError` for a value without `=` or with an empty key.
    public static func parseUserExtra(_ values: [String]) throws(ConfigError) -> [String: [String]] {
        var extra: [String: [String]] = [:]
        for item in values {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw ConfigError(
                    kind: .invalidValue, keyPath: "--as-user-extra",
                    message: "invalid value \"\(item)\": want key=value")
            }
            extra[String(item[..<equals]), default: []].append(String(item[item.index(after: equals)...]))
        }
        return extra
    }
}

extension KubeconfigOverrides: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        var parts: [String] = []
        if let server { parts.append("server: \(server)") }
        if token.nonEmpty != nil { parts.append("token: <redacted>") }
        if let certificateAuthority { parts.append("certificateAuthority: \(certificateAuthority)") }
        if let clientCertificate { parts.append("clientCertificate: \(clientCertificate)") }
        if let clientKey { parts.append("clientKey: \(clientKey)") }
        if let tlsServerName { parts.append("tlsServerName: \(tlsServerName)") }
        if let username { parts.append("username: \(username)") }
        if password.nonEmpty != nil { parts.append("password: <redacted>") }
        if let insecureSkipTLSVerify { parts.append("insecureSkipTLSVerify: \(insecureSkipTLSVerify)") }
        if let impersonateUser { parts.append("impersonateUser: \(impersonateUser)") }
        if !impersonateGroups.isEmpty { parts.append("impersonateGroups: \(impersonateGroups)") }
        if let impersonateUID { parts.append("impersonateUID: \(impersonateUID)") }
        if !impersonateExtra.isEmpty { parts.append("impersonateExtra: \(impersonateExtra.keys.sorted())") }
        return "KubeconfigOverrides(\(parts.joined(separator: ", ")))"
    }

    public var debugDescription: String { description }
}

extension Optional where Wrapped == String {
    /// `nil` for `nil` and for "".
    var nonEmpty: String? {
        switch self {
        case .some(let s) where !s.isEmpty: s
        default: nil
        }
    }
}
