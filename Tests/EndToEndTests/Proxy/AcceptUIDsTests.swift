import Foundation
import StandInServer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 12 part 1: only the user who started proxyd (and root) can use it. The other user is uid 65534 (nobody),
/// whose curl runs under `setpriv`; the tests run as root, as CI does.
@Suite(
    .serialized, .timeLimit(.minutes(3)),
    .enabled(if: getuid() == 0 && Tool.path("setpriv") != nil, "needs root and setpriv to run a client as another uid"))
struct AcceptUIDsTests {
    static let nobody = 65534

    /// curl as `uid` (nil: as ourselves, root); `-g` so that `[::1]` is not a glob.
    func curl(as uid: Int?, _ arguments: [String]) async throws -> CommandResult {
        let curl = ["curl", "-sS", "-g", "--noproxy", "*", "--max-time", "10", "-w", "\n%{http_code}"] + arguments
        if let uid {
            return try await Tool.run("setpriv", ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + curl)
        }
        return try await Tool.run(curl[0], Array(curl.dropFirst()))
    }

    /// The status code (last line) and the body.
    func outcome(_ r: CommandResult) -> (code: String, body: String) {
        let lines = r.text.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func tcpRefusesOtherUsersByDefault(address: String) async throws {
        let h = try await Harness.start(proxyArguments: ["--address=\(address)"])
        let url = "\(h.url)/api/v1/namespaces"
        let seen = h.standIn.stats.streamsOpened
        let refused = outcome(try await curl(as: Self.nobody, [url]))
        #expect(refused.code == "403")
        #expect(refused.body.contains("\"kind\":\"Status\""))
        #expect(refused.body.contains("uid \(Self.nobody)"))
        #expect(refused.body.contains("--accept-uids"))
        // A POST is refused the same way; nothing reached the apiserver.
        let post = outcome(try await curl(as: Self.nobody, ["-X", "POST", "-d", "{}", url]))
        #expect(post.code == "403")
        #expect(h.standIn.stats.streamsOpened == seen)
        // proxyd's own user (root here) is served.
        #expect(outcome(try await curl(as: nil, [url])).code == "200")
        #expect(h.proxy.child.stderr.contains("refused a connection from uid \(Self.nobody)"))
        await h.stop()
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func tcpServesListedUsers(address: String) async throws {
        let h = try await Harness.start(proxyArguments: ["--address=\(address)", "--accept-uids=\(Self.nobody)"])
        let url = "\(h.url)/api/v1/namespaces"
        #expect(outcome(try await curl(as: Self.nobody, [url])).code == "200")
        // An explicit list replaces the default: root is not in it.
        #expect(outcome(try await curl(as: nil, [url])).code == "403")
        await h.stop()
        let anyone = try await Harness.start(proxyArguments: ["--address=\(address)", "--accept-uids=*"])
        #expect(outcome(try await curl(as: Self.nobody, ["\(anyone.url)/api"])).code == "200")
        await anyone.stop()
    }

    @Test func unixSocket() async throws {
        let dir = try TempDirectory.make()
        defer { try? FileManager.default.removeItem(at: dir) }
        chmod(dir.path, 0o755)  // uid 65534 may reach the socket file; its own mode decides
        let path = dir.appendingPathComponent("proxyd.sock").path
        let h = try await Harness.start(proxyArguments: ["--unix-socket=\(path)"])
        let args = ["--unix-socket", path, "http://localhost/api"]
        // Default: the socket file is 0700, so uid 65534 cannot even connect...
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o700)
        let denied = try await curl(as: Self.nobody, args)
        #expect(denied.status == 7, "curl: \(denied.stderr)")  // couldn't connect (EACCES)
        // ...and with the file opened up, SO_PEERCRED still refuses it.
        chmod(path, 0o666)
        let refused = outcome(try await curl(as: Self.nobody, args))
        #expect(refused.code == "403")
        #expect(refused.body.contains("uid \(Self.nobody)"))
        #expect(outcome(try await curl(as: nil, args)).code == "200")
        await h.stop()

        // Listed: proxyd makes the socket file connectable for other users itself.
        let listed = try await Harness.start(proxyArguments: ["--unix-socket=\(path)", "--accept-uids=0,\(Self.nobody)"])
        let listedAttributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((listedAttributes[.posixPermissions] as? Int) == 0o666)
        #expect(outcome(try await curl(as: Self.nobody, args)).code == "200")
        #expect(outcome(try await curl(as: nil, args)).code == "200")
        await listed.stop()
    }

    /// In a pod the containers often run as different uids: with the in-cluster configuration the default is `*`.
    @Test func inClusterConfigurationServesEveryUserByDefault() async throws {
        let standIn = try await StandIn.start(StandInConfiguration())
        let sa = try TempDirectory.make()
        let home = try TempDirectory.make()
        defer { try? FileManager.default.removeItem(at: sa); try? FileManager.default.removeItem(at: home) }
        try standIn.caPEM.write(to: sa.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)
        try "standin-token".write(to: sa.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        let environment = [
            "HOME": home.path, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": String(standIn.port),
            "PROXYD_SERVICE_ACCOUNT_DIR": sa.path,
        ]
        let pod = try await RunningProxy.start(arguments: ["--port=0"], environment: environment)
        #expect(outcome(try await curl(as: Self.nobody, ["\(pod.baseURL)/api"])).code == "200")
        await pod.stop()
        let listed = try await RunningProxy.start(arguments: ["--port=0", "--accept-uids=0"], environment: environment)
        #expect(outcome(try await curl(as: Self.nobody, ["\(listed.baseURL)/api"])).code == "403")
        await listed.stop()
        try? await standIn.stop()
    }

    @Test func nonLoopbackListenerWarnsAtStart() async throws {
        let h = try await Harness.start(proxyArguments: ["--address=0.0.0.0"])
        #expect(h.proxy.child.stderr.contains("not a loopback address: anyone who can reach it acts as you"))
        // Local peers are still checked on a wildcard listener.
        let port = h.proxy.port
        #expect(outcome(try await curl(as: Self.nobody, ["http://127.0.0.1:\(port)/api"])).code == "403")
        #expect(outcome(try await curl(as: nil, ["http://127.0.0.1:\(port)/api"])).code == "200")
        await h.stop()
    }
}
