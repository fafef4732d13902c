import FoundationEssentials

/// The credential headers in force at one moment: immutable, swapped whole on rotation.
///
/// Never logged: `description` redacts the values.
public struct CredentialSnapshot: Sendable, Equatable, CustomStringConvertible {
    /// Value of the `Authorization` header to add (`Bearer …` or `Basic …`), if any.
    var authorization: String?
    /// `Impersonate-*` headers from the kubeconfig or flags.
    var impersonation: HTTPHeaders
    /// Set when `authorization` came from an exec plugin: which run produced it (a 401 refreshes only if the
    /// credential is still this one).
    var pluginGeneration: UInt64?
    /// The plugin credential's `expirationTimestamp`.
    var expiration: Date?
    /// Set while no credential could be obtained at all (the exec plugin or the token file failed from the start):
    /// why, in words that never contain a secret. Requests are answered with a 503 `Status` carrying it.
    var unavailable: String?
    /// Bumped on every change of the credential, so an answer can be matched with the credential it was about.
    var revision: UInt64 = 0

    public static let none = CredentialSnapshot(authorization: nil, impersonation: HTTPHeaders())

    init(
        authorization: String?, impersonation: HTTPHeaders, pluginGeneration: UInt64? = nil, expiration: Date? = nil
    ) {
        self.authorization = authorization
        self.impersonation = impersonation
        self.pluginGeneration = pluginGeneration
        self.expiration = expiration
    }

    /// Whether a plugin credential has passed its expiry (client-go refreshes before using it then).
    func isExpired(now: Date) -> Bool {
        guard let expiration else { return false }
        return now >= expiration
    }

    /// Adds the credentials to a request, kubectl-style: a client's own `Authorization` wins, and a client's
    /// `Impersonate-User` replaces configured impersonation entirely.
    ///
    /// As in client-go (`len(req.Header.Get(name)) != 0`), an empty client value counts as absent and is replaced;
    /// the configured user and uid replace the client's (`Header.Set`), groups and extras are added.
    func apply(to headers: inout HTTPHeaders) {
        if let authorization, (headers.first("authorization") ?? "").isEmpty {
            headers.replaceOrAdd(name: "Authorization", value: authorization)
        }
        if !impersonation.isEmpty && (headers.first("impersonate-user") ?? "").isEmpty {
            headers.remove(name: "impersonate-user")
            if impersonation.contains("impersonate-uid") {
                headers.remove(name: "impersonate-uid")
            }
            for field in impersonation.fields {
                headers.add(name: field.name, value: field.value)
            }
        }
    }

    public var description: String {
        let kind: String
        switch authorization {
        case .none: kind = "none"
        case .some(let a) where a.hasPrefix("Bearer "): kind = "bearer token"
        case .some(let a) where a.hasPrefix("Basic "): kind = "basic auth"
        case .some: kind = "authorization header"
        }
        return "CredentialSnapshot(\(kind), impersonation headers: \(impersonation.count))"
    }
}
