import Foundation
import Testing

@testable import ProxyCore

/// The kubeconfig `auth-provider` stanza: oidc id-tokens are sent as bearer tokens; the rest fail clearly.
@Suite struct AuthProviderTests {
    /// An unsigned JWT with the given claims (signature part is opaque to a client).
    static func jwt(_ claims: [String: Any]) -> String {
        func b64url(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let header = b64url(Data(#"{"alg":"RS256","typ":"JWT"}"#.utf8))
        let payload = b64url(try! JSONSerialization.data(withJSONObject: claims))
        return "\(header).\(payload).c2lnbmF0dXJl"
    }

    @Test func oidcIdTokenIsTheBearerToken() throws {
        let expiry = Date().addingTimeInterval(3600)
        let token = Self.jwt(["sub": "alice", "exp": Int(expiry.timeIntervalSince1970)])
        let result = try AuthProvider.token(provider: "oidc", config: ["id-token": token, "client-id": "k"])
        #expect(result.bearer == token)
        #expect(abs(result.expiry!.timeIntervalSince1970 - expiry.timeIntervalSince1970) < 1)

        let store = try CredentialStore(
            credentials: StaticCredentials(authProvider: "oidc", authProviderConfig: ["id-token": token]),
            sendCredentials: true)
        #expect(store.current.authorization == "Bearer " + token)
        #expect(store.authProviderTokenExpiry != nil)
    }

    @Test func oidcTokenWithoutExpiryIsUsedAsIs() throws {
        let token = Self.jwt(["sub": "alice"])
        let result = try AuthProvider.token(provider: "oidc", config: ["id-token": token])
        #expect(result == AuthProvider.Token(bearer: token, expiry: nil))
    }

    @Test func expiredOidcTokenIsAStartupErrorWithoutTheToken() throws {
        let token = Self.jwt(["sub": "alice", "exp": 1_600_000_000])
        let error = #expect(throws: CredentialError.self) {
            try AuthProvider.token(provider: "oidc", config: ["id-token": token, "refresh-token": "r-secret"])
        }
        let message = error?.description ?? ""
        #expect(message.contains("expired at 2020-09-13T12:26:40Z"))
        #expect(message.contains("does not use the refresh-token"))
        #expect(!message.contains(token) && !message.contains("r-secret"))
    }

    @Test(arguments: [
        (["client-id": "k"], "has no id-token"),
        (["id-token": "not-a-jwt"], "not a JSON Web Token"),
        (["id-token": "a.!!!.c"], "not a JSON Web Token"),
        (["id-token": jwt(["exp": "tomorrow"])], "exp claim is not a number"),
    ])
    func badOidcConfigurations(config: [String: String], expected: String) {
        let error = #expect(throws: CredentialError.self) {
            try AuthProvider.token(provider: "oidc", config: config)
        }
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }

    @Test(arguments: [
        ("gcp", "gke-gcloud-auth-plugin"),
        ("azure", "Azure/kubelogin"),
        ("openstack", "auth-provider \"openstack\" is not supported"),
    ])
    func otherProvidersNameTheReplacement(provider: String, expected: String) {
        let error = #expect(throws: CredentialError.self) {
            try CredentialStore(
                credentials: StaticCredentials(authProvider: provider, authProviderConfig: ["access-token": "x"]),
                sendCredentials: true)
        }
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }

    @Test func otherCredentialsWinOverTheProvider() throws {
        let token = Self.jwt(["sub": "alice"])
        let store = try CredentialStore(
            credentials: StaticCredentials(
                bearerToken: "static", authProvider: "oidc", authProviderConfig: ["id-token": token]),
            sendCredentials: true)
        #expect(store.current.authorization == "Bearer static")
        #expect(store.authProviderTokenExpiry == nil)
    }
}
