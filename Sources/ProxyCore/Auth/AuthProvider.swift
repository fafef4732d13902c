import FoundationEssentials

/// The kubeconfig `auth-provider` stanza (client-go `plugin/pkg/client/auth`).
///
/// Only `oidc` is served, from the `id-token` the kubeconfig holds: it is sent as a bearer token, as client-go does
/// while the token is valid. proxyd does not run the OIDC refresh flow (client-go refreshes with `refresh-token`
/// against the issuer and writes the new tokens back into the kubeconfig); an expired `id-token` is a start-up error
/// that says so, and an `id-token` that expires while proxyd runs is logged once. The other providers were removed
/// from client-go (gcp, azure) or never existed; their errors name the exec plugin that replaces them.
enum AuthProvider {
    struct Token: Equatable {
        var bearer: String
        /// The JWT's `exp` claim, when it has one.
        var expiry: Date?
    }

    /// The bearer token to send for `provider`.
    /// - Throws: `CredentialError` naming the provider and the reason; never containing a token.
    static func token(provider: String, config: [String: String], now: Date = Date()) throws(CredentialError) -> Token {
        switch provider {
        case "oidc":
            return try oidcToken(config: config, now: now)
        case "gcp":
            throw CredentialError(
                "the gcp auth plugin has been removed; use the \"gke-gcloud-auth-plugin\" kubectl/client-go credential plugin instead (an exec plugin; see https://cloud.google.com/blog/products/containers-kubernetes/kubectl-auth-changes-in-gke)")
        case "azure":
            throw CredentialError(
                "the azure auth plugin has been removed; use the https://github.com/Azure/kubelogin kubectl/client-go credential plugin instead (an exec plugin)")
        default:
            throw CredentialError(
                "the auth-provider \"\(provider)\" is not supported (only oidc is); use an exec credential plugin instead")
        }
    }

    private static func oidcToken(config: [String: String], now: Date) throws(CredentialError) -> Token {
        guard let idToken = config["id-token"]?.trimmingSpaces(), !idToken.isEmpty else {
            throw CredentialError(
                "auth-provider oidc: the kubeconfig has no id-token; proxyd does not run the OIDC login flow: log in with kubectl first, or use an exec plugin such as kubelogin")
        }
        let expiry = try jwtExpiry(idToken)
        if let expiry, expiry <= now {
            let refresh = (config["refresh-token"] ?? "").isEmpty ? "" : " (proxyd does not use the refresh-token)"
            throw CredentialError(
                "auth-provider oidc: the id-token expired at \(iso8601(expiry))\(refresh); refresh it (any kubectl command with this kubeconfig does) or use an exec plugin such as kubelogin")
        }
        return Token(bearer: idToken, expiry: expiry)
    }

    /// The `exp` claim of a JWT (seconds since the epoch), or nil when the payload has none.
    /// - Throws: when the token is not a JWT (three base64url parts with a JSON object payload).
    static func jwtExpiry(_ jwt: String) throws(CredentialError) -> Date? {
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = base64URLDecode(parts[1]),
            let claims = try? JSONDecoder().decode(JWTClaims.self, from: payload)
        else {
            throw CredentialError("auth-provider oidc: the id-token is not a JSON Web Token")
        }
        if claims.expIsInvalid {
            throw CredentialError("auth-provider oidc: the id-token's exp claim is not a number")
        }
        return claims.exp.map { Date(timeIntervalSince1970: $0) }
    }

    /// The one claim proxyd reads; any JSON object decodes.
    private struct JWTClaims: Decodable {
        var exp: Double?
        var expIsInvalid = false
        enum CodingKeys: String, CodingKey { case exp }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            guard container.contains(.exp), try !container.decodeNil(forKey: .exp) else { return }
            if let value = try? container.decode(Double.self, forKey: .exp) {
                exp = value
            } else {
                expIsInvalid = true
            }
        }
    }

    static func base64URLDecode(_ text: Substring) -> Data? {
        var s = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }

    static func iso8601(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
