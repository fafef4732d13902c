import Foundation
import Testing

@testable import ProxyCore

/// Credential headers built from kubeconfig material (KUBECTL-PROXY.md §2.2, §2.3, §2.6).
@Suite struct CredentialStoreTests {
    static func pairs(_ h: HTTPHeaders) -> [String] { h.fields.map { "\($0.name): \($0.value)" } }

    /// A scratch directory for token files, removed when released.
    final class Scratch {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.path + "/proxyd-cred-tests-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }

        func write(_ name: String, _ contents: String) throws -> String {
            let file = "\(path)/\(name)"
            try Data(contents.utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
            return file
        }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var note: String
        var credentials: StaticCredentials
        var sendCredentials = true
        var authorization: String?
        var impersonation: [String] = []
        var testDescription: String { note }
    }

    static let cases: [Case] = [
        Case(note: "nothing configured", credentials: StaticCredentials(), authorization: nil),
        Case(note: "bearer token", credentials: StaticCredentials(bearerToken: "abc.def"),
             authorization: "Bearer abc.def"),
        Case(note: "empty token is no token", credentials: StaticCredentials(bearerToken: ""), authorization: nil),
        Case(note: "basic auth", credentials: StaticCredentials(username: "alice", password: "s3cret:x"),
             authorization: "Basic " + Data("alice:s3cret:x".utf8).base64EncodedString()),
        Case(note: "basic auth exact encoding", credentials: StaticCredentials(username: "user", password: "pass"),
             authorization: "Basic dXNlcjpwYXNz"),
        Case(note: "basic auth without password", credentials: StaticCredentials(username: "user"),
             authorization: "Basic dXNlcjo="),
        Case(note: "basic auth, UTF-8", credentials: StaticCredentials(username: "é", password: "€"),
             authorization: "Basic w6k64oKs"),
        Case(note: "impersonate user only", credentials: StaticCredentials(impersonateUser: "bob"),
             authorization: nil, impersonation: ["Impersonate-User: bob"]),
        Case(
            note: "--as bob --as-group g1 --as-group g2 --as-uid u-1",
            credentials: StaticCredentials(
                bearerToken: "t", impersonateUser: "bob", impersonateGroups: ["g1", "g2"], impersonateUID: "u-1"),
            authorization: "Bearer t",
            impersonation: [
                "Impersonate-User: bob", "Impersonate-Group: g1", "Impersonate-Group: g2", "Impersonate-Uid: u-1",
            ]),
        Case(
            note: "as carol, as-groups [ops], as-user-extra {reason: [debug]}",
            credentials: StaticCredentials(
                impersonateUser: "carol", impersonateGroups: ["ops"], impersonateExtra: ["reason": ["debug"]]),
            authorization: nil,
            impersonation: ["Impersonate-User: carol", "Impersonate-Group: ops", "Impersonate-Extra-reason: debug"]),
        Case(
            note: "several extras, sorted by key, one header per value",
            credentials: StaticCredentials(
                impersonateUser: "u", impersonateExtra: ["scopes": ["a", "b"], "acme.io-team": ["x"]]),
            authorization: nil,
            impersonation: [
                "Impersonate-User: u", "Impersonate-Extra-acme.io-team: x", "Impersonate-Extra-scopes: a",
                "Impersonate-Extra-scopes: b",
            ]),
        Case(
            note: "groups without a user are not sent",
            credentials: StaticCredentials(impersonateGroups: ["g"]),
            authorization: nil),
        Case(
            note: "http server: no token",
            credentials: StaticCredentials(bearerToken: "t"), sendCredentials: false, authorization: nil),
        Case(
            note: "http server: no basic auth",
            credentials: StaticCredentials(username: "u", password: "p"), sendCredentials: false,
            authorization: nil),
        Case(
            note: "http server: no impersonation",
            credentials: StaticCredentials(bearerToken: "t", impersonateUser: "bob", impersonateGroups: ["g"]),
            sendCredentials: false, authorization: nil),
    ]

    @Test(arguments: cases)
    func snapshot(_ c: Case) throws {
        let store = try CredentialStore(credentials: c.credentials, sendCredentials: c.sendCredentials)
        let s = store.current
        #expect(s.authorization == c.authorization)
        #expect(Self.pairs(s.impersonation) == c.impersonation)
    }

    /// client-go escapes extra keys for use in a header name (`headerKeyEscape`): every byte that is not a token
    /// character, and `%`, becomes `%XX`. The apiserver unescapes them.
    @Test(arguments: [
        ("reason", "Impersonate-Extra-reason"),
        ("example.com/team", "Impersonate-Extra-example.com%2Fteam"),
        ("a b", "Impersonate-Extra-a%20b"),
        ("100%", "Impersonate-Extra-100%25"),
        ("k=v;x,y:z@w(1)", "Impersonate-Extra-k%3Dv%3Bx%2Cy%3Az%40w%281%29"),
        ("!#$&'*+-.^_`|~", "Impersonate-Extra-!#$&'*+-.^_`|~"),
        ("é", "Impersonate-Extra-%C3%A9"),
    ])
    func extraKeysAreEscapedLikeClientGo(_ key: String, _ header: String) throws {
        let store = try CredentialStore(
            credentials: StaticCredentials(impersonateUser: "u", impersonateExtra: [key: ["v"]]),
            sendCredentials: true)
        #expect(Self.pairs(store.current.impersonation) == ["Impersonate-User: u", "\(header): v"])
    }

    // MARK: Token files

    @Test func tokenFileReadAtInit() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "  file-token-1\n\n")
        let store = try CredentialStore(credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        #expect(store.current.authorization == "Bearer file-token-1")
    }

    @Test func tokenFileWinsOverInlineToken() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "from-file")
        let store = try CredentialStore(
            credentials: StaticCredentials(bearerToken: "inline", tokenFile: file), sendCredentials: true)
        #expect(store.current.authorization == "Bearer from-file")
    }

    @Test func tokenFileKeepsImpersonation() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "tok")
        let store = try CredentialStore(
            credentials: StaticCredentials(tokenFile: file, impersonateUser: "bob"), sendCredentials: true)
        #expect(store.current.authorization == "Bearer tok")
        #expect(Self.pairs(store.current.impersonation) == ["Impersonate-User: bob"])
    }

    @Test func reloadPicksUpRewrittenFile() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "one")
        let store = try CredentialStore(credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        #expect(store.reloadTokenFile(file) == false)  // unchanged
        #expect(store.current.authorization == "Bearer one")
        _ = try dir.write("token", "two\n")
        #expect(store.reloadTokenFile(file) == true)
        #expect(store.current.authorization == "Bearer two")
        #expect(store.reloadTokenFile(file) == false)
        #expect(store.current.authorization == "Bearer two")
    }

    @Test func failedReloadKeepsLastGoodToken() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "good")
        let store = try CredentialStore(credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        // Emptied file: an error, the last good token stays.
        _ = try dir.write("token", " \n\t")
        #expect(store.reloadTokenFile(file) == false)
        #expect(store.current.authorization == "Bearer good")
        // Removed file: same.
        try FileManager.default.removeItem(atPath: file)
        #expect(store.reloadTokenFile(file) == false)
        #expect(store.current.authorization == "Bearer good")
        // Back again with a new value.
        _ = try dir.write("token", "better")
        #expect(store.reloadTokenFile(file) == true)
        #expect(store.current.authorization == "Bearer better")
    }

    @Test func watchingPicksUpRewrittenFile() async throws {
        let dir = try Scratch()
        let file = try dir.write("token", "first")
        let store = try CredentialStore(
            credentials: StaticCredentials(tokenFile: file), sendCredentials: true, pollInterval: .milliseconds(20))
        store.startWatching()
        defer { store.stopWatching() }
        _ = try dir.write("token", "second")
        var seen = store.current.authorization
        for _ in 0..<250 where seen != "Bearer second" {
            try await Task.sleep(for: .milliseconds(20))
            seen = store.current.authorization
        }
        #expect(seen == "Bearer second")
    }

    /// A store with a token file that was never watched (start-up failed later, or a test) must release cleanly.
    @Test func unwatchedStoreWithTokenFileDeinitialises() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "t")
        var store: CredentialStore? = try CredentialStore(
            credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        #expect(store?.current.authorization == "Bearer t")
        store = nil
        #expect(store == nil)
    }

    @Test func stoppedStoreDeinitialises() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "t")
        var store: CredentialStore? = try CredentialStore(
            credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        store?.startWatching()
        store?.stopWatching()
        store = nil
        #expect(store == nil)
    }

    @Test func emptyTokenFileMakesTheCredentialUnavailable() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "\n  \n")
        let store = try CredentialStore(credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        #expect(store.current.authorization == nil)
        #expect(store.current.unavailable == "token file \(file) is empty")
    }

    /// A token file missing at start-up: no credential and the reason, until a re-read finds a token.
    @Test func missingTokenFileRecoversWhenWritten() throws {
        let dir = try Scratch()
        let file = dir.path + "/absent"
        let counters = ServiceCounters()
        let store = try CredentialStore(
            credentials: StaticCredentials(tokenFile: file), sendCredentials: true, counters: counters)
        #expect(store.current.authorization == nil)
        #expect(store.current.unavailable == "cannot read token file \(file): No such file or directory")
        #expect(store.failure == store.current.unavailable)
        let revision = store.current.revision
        #expect(store.reloadTokenFile(file) == false)
        _ = try dir.write("absent", "late-token\n")
        #expect(store.reloadTokenFile(file) == true)
        #expect(store.current.authorization == "Bearer late-token")
        #expect(store.current.unavailable == nil)
        #expect(store.failure == nil)
        #expect(store.current.revision == revision + 1)
        #expect(counters.values.credentialRefreshes[CredentialSourceLabel.tokenFile.rawValue] == [1, 1])
    }

    @Test func httpServerIgnoresTokenFile() throws {
        // Not even read: an unreadable file does not stop start-up against an http server.
        let store = try CredentialStore(
            credentials: StaticCredentials(tokenFile: "/nonexistent/proxyd/token"), sendCredentials: false)
        #expect(store.current == .none)
        store.startWatching()
        store.stopWatching()
    }

    // MARK: Secrets never in descriptions

    @Test func descriptionsRedactSecrets() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "SECRET-FILE-TOKEN")
        let secrets = ["SECRET-FILE-TOKEN", "SECRET-INLINE", "SECRET-PASSWORD"]
        let creds = StaticCredentials(
            bearerToken: "SECRET-INLINE", tokenFile: file, username: "alice", password: "SECRET-PASSWORD",
            impersonateUser: "bob")
        let store = try CredentialStore(credentials: creds, sendCredentials: true)
        let basic = try CredentialStore(
            credentials: StaticCredentials(username: "alice", password: "SECRET-PASSWORD"), sendCredentials: true)
        let texts = [
            String(describing: store.current), String(reflecting: store.current), "\(store.current)",
            String(describing: basic.current), String(reflecting: basic.current),
            String(describing: store), String(reflecting: store),
            String(describing: creds), String(reflecting: creds),
        ]
        let basicValue = try #require(basic.current.authorization)
        for text in texts {
            for secret in secrets + [basicValue, String(basicValue.dropFirst(6))] {
                #expect(!text.contains(secret), "\(text) leaks a secret")
            }
        }
        #expect(String(describing: store.current) == "CredentialSnapshot(bearer token, impersonation headers: 1)")
        #expect(String(describing: basic.current) == "CredentialSnapshot(basic auth, impersonation headers: 0)")
        #expect(String(describing: CredentialSnapshot.none) == "CredentialSnapshot(none, impersonation headers: 0)")
    }

    @Test func errorsNeverContainTheToken() throws {
        let dir = try Scratch()
        let file = try dir.write("token", "SECRET")
        let store = try CredentialStore(credentials: StaticCredentials(tokenFile: file), sendCredentials: true)
        _ = try dir.write("token", "")
        #expect(throws: CredentialError.self) { try CredentialStore.readToken(file) }
        do {
            _ = try CredentialStore.readToken(file)
        } catch {
            #expect(!error.description.contains("SECRET"))
        }
        #expect(store.current.authorization == "Bearer SECRET")
    }
}
