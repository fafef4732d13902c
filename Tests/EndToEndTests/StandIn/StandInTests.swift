import Crypto
import Foundation
import StandInServer
import Testing

// Tests of the apiserver stand-in itself, driven by real clients: /usr/bin/curl (OpenSSL + nghttp2) and kubectl.
// Every subprocess has a hard time limit, so a hang fails the test instead of stalling the run.

@Suite("StandIn")
struct StandInTests {
    // MARK: Discovery and protocols

    @Test func apiAnswersOverHTTP2AndHTTP1() async throws {
        try await withFixture { fixture in

            for (flag, expected) in [("--http2", "2"), ("--http1.1", "1.1")] {
                let result = try await fixture.curl([flag, "-w", "\n%{http_version} %{http_code}", fixture.url("/api")])
                #expect(result.exitCode == 0, "\(result.stderr)")
                let (body, trailer) = result.splitTrailer()
                #expect(trailer == "\(expected) 200")
                let json = try jsonObject(body)
                #expect(json["kind"] as? String == "APIVersions")
                #expect(json["versions"] as? [String] == ["v1"])
                let address = (json["serverAddressByClientCIDRs"] as? [[String: Any]])?.first?["serverAddress"] as? String
                #expect(address == "127.0.0.1:\(fixture.standIn.port)")
            }

            let version = try jsonObject(try await fixture.curl([fixture.url("/version")]).stdout)
            #expect(version["gitVersion"] as? String == "v1.32.0-standin")
            let groups = try jsonObject(try await fixture.curl([fixture.url("/apis")]).stdout)
            #expect(groups["kind"] as? String == "APIGroupList")
            let resources = try jsonObject(try await fixture.curl([fixture.url("/api/v1")]).stdout)
            let names = (resources["resources"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names == ["configmaps", "namespaces", "pods", "services"])

            let missing = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/openapi/v2")])
            let (missingBody, code) = missing.splitTrailer()
            #expect(code == "404")
            #expect(try jsonObject(missingBody)["reason"] as? String == "NotFound")
        }
    }

    @Test func http2CanBeDisabled() async throws {
        try await withFixture(configure: { $0.enableHTTP2 = false }) { fixture in
            let result = try await fixture.curl(["--http2", "-w", "\n%{http_version}", fixture.url("/api")])
            #expect(result.splitTrailer().1 == "1.1")
        }
    }

    // MARK: Authentication

    @Test func requestsWithoutValidCredentialsGet401() async throws {
        try await withFixture { fixture in

            for extra in [[], ["-H", "Authorization: Bearer wrong"]] {
                let result = try await fixture.curl(extra + ["-w", "\n%{http_code}", fixture.url("/api")], token: nil)
                let (body, code) = result.splitTrailer()
                #expect(code == "401")
                let status = try jsonObject(body)
                #expect(status["kind"] as? String == "Status")
                #expect(status["reason"] as? String == "Unauthorized")
                #expect(status["code"] as? Int == 401)
            }

            fixture.standIn.setTokens(["rotated"])
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api")]).splitTrailer().1 == "401")
            #expect(try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api")], token: "rotated").splitTrailer().1 == "200")
            // Health endpoints are anonymous, as on a real apiserver.
            #expect(try await fixture.curl([fixture.url("/healthz")], token: nil).stdout == "ok")
        }
    }

    @Test func clientCertificateAuthenticates() async throws {
        try await withFixture { fixture in
            for flag in ["--http2", "--http1.1"] {
                let result = try await fixture.curl(
                    [flag, "--cert", fixture.path("client.crt"), "--key", fixture.path("client.key"), fixture.url("/standin/echo")],
                    token: nil
                )
                let echo = try jsonObject(result.stdout)
                #expect(echo["authenticatedBy"] as? String == "certificate")
                #expect(echo["clientCertificateCN"] as? String == "standin-client")
            }
            // With a token and no certificate the CN is null.
            let echo = try jsonObject(try await fixture.curl([fixture.url("/standin/echo")]).stdout)
            #expect(echo["authenticatedBy"] as? String == "token")
            #expect(echo["clientCertificateCN"] is NSNull)
        }
    }

    // MARK: Echo

    @Test func echoReportsBodyHashPathAndProtocol() async throws {
        try await withFixture { fixture in
            // 3 MiB + 17 bytes: a random 64 KiB block repeated (cheap to make in a debug build), then a tail.
            let block = (0..<65536).map { _ in UInt8.random(in: 0...255) }
            var payload = Data(capacity: (3 << 20) + 17)
            for _ in 0..<48 { payload.append(contentsOf: block) }
            payload.append(contentsOf: block[0..<17])
            let file = fixture.path("payload.bin")
            try payload.write(to: URL(fileURLWithPath: file))
            let expected = SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined()

            for (flag, proto) in [("--http2", "h2"), ("--http1.1", "http/1.1")] {
                let result = try await fixture.curl([
                    flag, "-X", "PUT", "--data-binary", "@\(file)", "-H", "Content-Type: application/octet-stream",
                    "-H", "X-Multi: one", "-H", "X-Multi: two",
                    fixture.url("/standin/echo/a%2Fb/c?x=1&y=%20"),
                ])
                #expect(result.exitCode == 0, "\(result.stderr)")
                let echo = try jsonObject(result.stdout)
                #expect(echo["method"] as? String == "PUT")
                #expect(echo["protocol"] as? String == proto)
                #expect(echo["bodyLength"] as? Int == payload.count)
                #expect(echo["bodySHA256"] as? String == expected)
                #expect(echo["rawPath"] as? String == "/standin/echo/a%2Fb/c")
                #expect(echo["path"] as? String == "/standin/echo/a/b/c")
                #expect(echo["query"] as? String == "x=1&y=%20")
                let headers = echo["headers"] as? [String: [String]]
                #expect(headers?["x-multi"] == ["one", "two"])
                #expect(headers?["authorization"] == ["Bearer standin-token"])
            }
        }
    }

    // MARK: Store and watch

    @Test func createGetDeleteThroughTheAPI() async throws {
        try await withFixture { fixture in
            let created = try await fixture.curl([
                "-X", "POST", "-H", "Content-Type: application/json", "-w", "\n%{http_code}",
                "--data", #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1"},"data":{"k":"v"}}"#,
                fixture.url("/api/v1/namespaces/default/configmaps"),
            ]).splitTrailer()
            #expect(created.1 == "201")
            let object = try jsonObject(created.0)
            let metadata = object["metadata"] as? [String: Any]
            #expect(metadata?["namespace"] as? String == "default")
            #expect(Int(metadata?["resourceVersion"] as? String ?? "") != nil)

            let duplicate = try await fixture.curl([
                "-X", "POST", "-w", "\n%{http_code}", "--data", #"{"metadata":{"name":"cm1"}}"#,
                fixture.url("/api/v1/namespaces/default/configmaps"),
            ]).splitTrailer()
            #expect(duplicate.1 == "409")

            let list = try jsonObject(try await fixture.curl([fixture.url("/api/v1/configmaps")]).stdout)
            #expect(list["kind"] as? String == "ConfigMapList")
            #expect((list["items"] as? [Any])?.count == 1)

            let got = try jsonObject(try await fixture.curl([fixture.url("/api/v1/namespaces/default/configmaps/cm1")]).stdout)
            #expect((got["data"] as? [String: String])?["k"] == "v")
            let deleted = try await fixture.curl(["-X", "DELETE", "-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/default/configmaps/cm1")])
            #expect(deleted.splitTrailer().1 == "200")
            let gone = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api/v1/namespaces/default/configmaps/cm1")])
            #expect(gone.splitTrailer().1 == "404")
        }
    }

    @Test(arguments: ["--http2", "--http1.1"])
    func watchStreamsLiveEvents(flag: String) async throws {
        try await withFixture { fixture in
            try fixture.standIn.createPod(name: "first")

            let watch = try fixture.stream(["-N", flag, fixture.url("/api/v1/namespaces/default/pods?watch=1")])
            defer { watch.terminate() }
            let event1 = try jsonObject(try await watch.nextLine())
            #expect(event1["type"] as? String == "ADDED")
            #expect(((event1["object"] as? [String: Any])?["metadata"] as? [String: Any])?["name"] as? String == "first")

            // Only now create the second pod, through the API: the stream must deliver it.
            let created = try await fixture.curl([
                "-X", "POST", "-w", "\n%{http_code}", "--data", #"{"metadata":{"name":"second"}}"#,
                fixture.url("/api/v1/namespaces/default/pods"),
            ])
            #expect(created.splitTrailer().1 == "201")
            let event2 = try jsonObject(try await watch.nextLine())
            #expect(event2["type"] as? String == "ADDED")
            #expect(((event2["object"] as? [String: Any])?["metadata"] as? [String: Any])?["name"] as? String == "second")

            try fixture.standIn.createPod(namespace: "other", name: "elsewhere")  // other namespace: not delivered
            try fixture.standIn.deletePod(name: "first")
            let event3 = try jsonObject(try await watch.nextLine())
            #expect(event3["type"] as? String == "DELETED")
            #expect(((event3["object"] as? [String: Any])?["metadata"] as? [String: Any])?["name"] as? String == "first")

            // The client going away ends the watch on the stand-in.
            #expect(fixture.standIn.stats.activeWatches == 1)
            watch.terminate()
            try await eventually { fixture.standIn.stats.activeWatches == 0 }
        }
    }

    @Test func watchFromResourceVersionAndTimeout() async throws {
        try await withFixture { fixture in
            try fixture.standIn.createPod(name: "old")
            let rv = fixture.standIn.resourceVersion
            try fixture.standIn.createPod(name: "new")
            let result = try await fixture.curl([fixture.url("/api/v1/namespaces/default/pods?watch=true&resourceVersion=\(rv)&timeoutSeconds=1")])
            #expect(result.exitCode == 0)
            let lines = result.stdout.split(separator: "\n")
            #expect(lines.count == 1)
            #expect(lines.first?.contains(#""name":"new""#) == true)
        }
    }

    // MARK: Streaming endpoints

    @Test(arguments: ["--http2", "--http1.1"])
    func largeListHasExactSizeAndIsValidJSON(flag: String) async throws {
        try await withFixture(configure: { $0.largeListBytes = 300_000 }) { fixture in
            for (path, size) in [("/standin/large?bytes=2000000", 2_000_000), ("/api/v1/namespaces/big/configmaps", 300_000)] {
                let output = fixture.path("large.json")
                let result = try await fixture.curl([flag, "-o", output, "-w", "%{http_code}", fixture.url(path)])
                #expect(result.stdout == "200")
                let data = try Data(contentsOf: URL(fileURLWithPath: output))
                #expect(data.count == size)
                let json = try JSONSerialization.jsonObject(with: data) as? [String: Any]
                #expect(json?["kind"] as? String == "ConfigMapList")
                #expect(((json?["items"] as? [Any])?.count ?? 0) > 10)
            }
        }
    }

    @Test func slowSendsSpacedChunks() async throws {
        try await withFixture { fixture in
            let start = ContinuousClock.now
            let result = try await fixture.curl([fixture.url("/standin/slow?delayMs=100&chunks=3")])
            #expect(result.stdout == "chunk 1/3\nchunk 2/3\nchunk 3/3\n")
            #expect(ContinuousClock.now - start >= .milliseconds(300))
        }
    }

    @Test func resetBreaksTheResponse() async throws {
        try await withFixture { fixture in
            let h2 = try await fixture.curl(["--http2", fixture.url("/standin/reset")])
            #expect(h2.exitCode == 92, "\(h2.stderr)")  // CURLE_HTTP2_STREAM
            #expect(h2.stderr.contains("INTERNAL_ERROR"))
            let h1 = try await fixture.curl(["--http1.1", fixture.url("/standin/reset")])
            #expect(h1.exitCode != 0, "\(h1.stderr)")
            // The server is fine afterwards.
            #expect(try await fixture.curl([fixture.url("/api")]).exitCode == 0)
        }
    }

    @Test func statusRedirectAndNotFound() async throws {
        try await withFixture { fixture in
            let teapot = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/standin/status/418")]).splitTrailer()
            #expect(teapot.1 == "418")
            #expect(try jsonObject(teapot.0)["code"] as? Int == 418)
            let redirect = try await fixture.curl(["-w", "%{http_code} %{redirect_url}", fixture.url("/standin/redirect")])
            #expect(redirect.stdout.hasSuffix("302 https://127.0.0.1:\(fixture.standIn.port)/api/v1/namespaces"))
            let unknown = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/no/such/thing")])
            #expect(unknown.splitTrailer().1 == "404")
        }
    }

    // MARK: Connections: stats, GOAWAY, restart

    @Test func statsCountConnectionsAndStreams() async throws {
        try await withFixture { fixture in
            fixture.standIn.resetStats()
            // One h2 connection carrying two streams, then one h1 connection carrying two requests.
            _ = try await fixture.curl(["--http2", fixture.url("/api"), fixture.url("/version")])
            _ = try await fixture.curl(["--http1.1", fixture.url("/api"), fixture.url("/version")])
            let stats = fixture.standIn.stats
            #expect(stats.tcpConnectionsAccepted == 2)
            #expect(stats.h2Connections == 1)
            #expect(stats.h1Connections == 1)
            #expect(stats.streamsOpened == 4)
            #expect(stats.requestsByPath["/api"] == 2)

            let json = try jsonObject(try await fixture.curl([fixture.url("/standin/stats")]).stdout)
            #expect(json["tcpConnectionsAccepted"] as? Int == 3)
            #expect(json["streamsOpened"] as? Int == 5)
        }
    }

    @Test func goAwayMakesClientsReconnect() async throws {
        try await withFixture { fixture in
            fixture.standIn.resetStats()
            // One curl run: the POST triggers GOAWAY on its own connection; its response still arrives, and the next
            // request must go out on a new connection.
            let result = try await fixture.curl([
                "--http2", "-X", "POST", fixture.url("/standin/goaway"), "--next",
                "--http2", "--cacert", fixture.path("ca.crt"), "-H", "Authorization: Bearer standin-token", fixture.url("/api"),
            ])
            #expect(result.exitCode == 0, "\(result.stderr)")
            #expect(result.stdout.contains(#"{"goAwaySent":1}"#))
            #expect(result.stdout.contains("APIVersions"))
            #expect(fixture.standIn.stats.tcpConnectionsAccepted == 2)
            #expect(fixture.standIn.stats.goAwaysSent == 1)

            // An in-flight watch survives sendGoAway() and keeps streaming; its connection closes when it ends.
            let watch = try fixture.stream(["-N", "--http2", fixture.url("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=15")])
            defer { watch.terminate() }
            try fixture.standIn.createPod(name: "before")
            #expect(try await watch.nextLine().contains("before"))
            await fixture.standIn.sendGoAway()
            try fixture.standIn.createPod(name: "after")
            #expect(try await watch.nextLine().contains("after"))
            #expect(try await watch.waitForExit(timeout: .seconds(30)) == 0)
        }
    }

    @Test func restartListensAgainOnTheSamePort() async throws {
        try await withFixture { fixture in
            let port = fixture.standIn.port
            let watch = try fixture.stream(["-N", fixture.url("/api/v1/namespaces/default/pods?watch=1")])
            defer { watch.terminate() }
            try fixture.standIn.createPod(name: "p")
            _ = try await watch.nextLine()

            try await fixture.standIn.restart()
            #expect(fixture.standIn.port == port)
            #expect(try await watch.waitForExit() != 0)  // the open connection was cut
            let again = try await fixture.curl(["-w", "\n%{http_code}", fixture.url("/api")])
            #expect(again.splitTrailer().1 == "200")
            #expect(fixture.standIn.stats.activeConnections <= 1)
        }
    }

    // MARK: kubectl

    @Test func kubectlWorksAgainstTheStandIn() async throws {
        try await withFixture { fixture in
            try fixture.standIn.createPod(name: "alpha")
            try fixture.standIn.createPod(name: "beta")
            let kubeconfig = fixture.path("kubeconfig")

            let get = try await fixture.kubectl(["--kubeconfig", kubeconfig, "get", "pods"])
            #expect(get.exitCode == 0, "\(get.stderr)")
            let rows = get.stdout.split(separator: "\n")
            #expect(rows.first?.hasPrefix("NAME") == true)
            #expect(rows.dropFirst().map { $0.split(separator: " ").first.map(String.init) } == ["alpha", "beta"])
            #expect(rows.first?.contains("STATUS") == true)

            let raw = try await fixture.kubectl(["--kubeconfig", kubeconfig, "get", "--raw", "/api"])
            #expect(try jsonObject(raw.stdout)["kind"] as? String == "APIVersions")

            let certGet = try await fixture.kubectl(["--kubeconfig", fixture.path("kubeconfig-cert"), "get", "pods", "-o", "name"])
            #expect(certGet.stdout == "pod/alpha\npod/beta\n", "\(certGet.stderr)")

            let watch = try fixture.stream(
                ["--kubeconfig", kubeconfig, "--request-timeout", "30s", "get", "pods", "-w", "--no-headers"],
                executable: Tool.path("kubectl") ?? "/usr/bin/kubectl"
            )
            defer { watch.terminate() }
            var seen: Set<String> = []
            while seen.count < 2 {
                seen.insert(String(try await watch.nextLine().split(separator: " ").first ?? ""))
            }
            #expect(seen == ["alpha", "beta"])
            try fixture.standIn.createPod(name: "gamma")
            #expect(try await watch.nextLine().hasPrefix("gamma"))
        }
    }
}

// MARK: - Helpers

/// Polls `condition` every 20 ms until it holds, failing after `timeout`.
private func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("condition not met within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

private func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(text.prefix(200))")
    }
    return object
}

private struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct StandInCommandResult {
    var exitCode: Int32
    var stdout: String
    var stderr: String

    /// Splits off the last line (written by curl's `-w "\n..."`).
    func splitTrailer() -> (String, String) {
        guard let newline = stdout.lastIndex(of: "\n") else { return ("", stdout) }
        return (String(stdout[..<newline]), String(stdout[stdout.index(after: newline)...]))
    }
}

private final class Box<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// Runs `body` against a fresh stand-in (port 0, state directory in /tmp) and always stops it afterwards.
func withFixture(
    configure: (inout StandInConfiguration) -> Void = { _ in },
    _ body: (StandInFixture) async throws -> Void
) async throws {
    let fixture = try await StandInFixture.start(configure)
    do {
        try await body(fixture)
    } catch {
        await fixture.cleanUp()
        throw error
    }
    await fixture.cleanUp()
}

struct StandInFixture {
    let standIn: StandIn
    let directory: String

    static func start(_ configure: (inout StandInConfiguration) -> Void = { _ in }) async throws -> StandInFixture {
        let directory = NSTemporaryDirectory() + "standin-test-" + UUID().uuidString
        var config = StandInConfiguration()
        config.stateDirectory = directory
        configure(&config)
        return StandInFixture(standIn: try await StandIn.start(config), directory: directory)
    }

    func cleanUp() async {
        try? await standIn.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/" + name }
    func url(_ path: String) -> String { "https://127.0.0.1:\(standIn.port)\(path)" }

    func curlArguments(_ arguments: [String], token: String?) -> [String] {
        var base = ["--silent", "--show-error", "--max-time", "20", "--cacert", path("ca.crt")]
        if let token { base += ["-H", "Authorization: Bearer \(token)"] }
        return base + arguments
    }

    func curl(_ arguments: [String], token: String? = "standin-token") async throws -> StandInCommandResult {
        try await run("/usr/bin/curl", curlArguments(arguments, token: token))
    }

    func kubectl(_ arguments: [String]) async throws -> StandInCommandResult {
        try await run(Tool.path("kubectl") ?? "/usr/bin/kubectl", ["--request-timeout", "20s"] + arguments)
    }

    fileprivate func stream(_ arguments: [String], executable: String = "/usr/bin/curl") throws -> LineStream {
        let args = executable.hasSuffix("curl") ? curlArguments(arguments, token: "standin-token") : arguments
        return try LineStream(executable: executable, arguments: args)
    }

    func run(_ executable: String, _ arguments: [String]) async throws -> StandInCommandResult {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let process: Subprocess
                do {
                    process = try Subprocess(
                        executable: executable, arguments: arguments, environment: ["PATH": "/usr/bin:/bin", "HOME": directory])
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                let out = process.standardOutput, err = process.standardError
                let stderr = Box(Data())
                let group = DispatchGroup()
                group.enter()
                DispatchQueue.global().async {
                    let data = err.readDataToEndOfFile()
                    stderr.withLock { $0 = data }
                    group.leave()
                }
                let stdout = out.readDataToEndOfFile()
                group.wait()
                process.waitUntilExit()
                continuation.resume(returning: StandInCommandResult(
                    exitCode: process.terminationStatus,
                    stdout: String(decoding: stdout, as: UTF8.self),
                    stderr: String(decoding: stderr.withLock { $0 }, as: UTF8.self)
                ))
            }
        }
    }
}

/// A long-running subprocess whose stdout is read line by line, each read bounded by a timeout.
private final class LineStream {
    private let process: Subprocess
    private let state = Box((buffer: Data(), lines: [String](), eof: false))
    private let errors = Box(Data())

    init(executable: String, arguments: [String]) throws {
        process = try Subprocess(
            executable: executable, arguments: arguments,
            environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()])
        let err = process.standardError
        let errors = self.errors
        Thread.detachNewThread {
            let data = err.readDataToEndOfFile()
            errors.withLock { $0 = data }
        }
        let handle = process.standardOutput
        let state = self.state
        Thread.detachNewThread {
            while true {
                let data = handle.availableData
                let done = state.withLock { state -> Bool in
                    if data.isEmpty {
                        state.eof = true
                        return true
                    }
                    state.buffer.append(data)
                    while let newline = state.buffer.firstIndex(of: UInt8(ascii: "\n")) {
                        state.lines.append(String(decoding: state.buffer[state.buffer.startIndex..<newline], as: UTF8.self))
                        state.buffer.removeSubrange(state.buffer.startIndex...newline)
                    }
                    return false
                }
                if done { return }
            }
        }
    }

    func nextLine(timeout: Duration = .seconds(15)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (line, eof) = state.withLock { state -> (String?, Bool) in
                state.lines.isEmpty ? (nil, state.eof) : (state.lines.removeFirst(), false)
            }
            if let line { return line }
            if eof {
                try await Task.sleep(for: .milliseconds(100))
                let stderr = String(decoding: errors.withLock { $0 }, as: UTF8.self)
                throw TestFailure("stream ended before the next line; stderr: \(stderr)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestFailure("no line within \(timeout)")
    }

    func waitForExit(timeout: Duration = .seconds(15)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { throw TestFailure("process still running after \(timeout)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        return process.terminationStatus
    }

    /// Kills the process with SIGKILL (a test runner may leave SIGTERM blocked or ignored in its children); it is
    /// reaped in the background, so the test's thread never blocks.
    func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
