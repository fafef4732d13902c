import Crypto
import Foundation
import StandInServer
import Testing

/// The real kubectl's exec and port-forward through proxyd (`--server http://127.0.0.1:PORT`, reject filter relaxed)
/// against the stand-in's exec and port-forward endpoints, which speak the Kubernetes subprotocols: WebSocket
/// (`v5.channel.k8s.io`; `SPDY/3.1+portforward.k8s.io` for port-forward) as kubectl 1.32 does by default, and SPDY/3.1
/// when kubectl's WebSocket switches are off. Every upgrade must reach the stand-in on its own HTTP/1.1 connection.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct KubectlUpgradeTests {
    static let relaxedFilter = ["--reject-paths=^$"]
    static let spdyExec = ["KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"]
    static let spdyPortForward = ["KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"]

    private func start(filter: [String] = relaxedFilter) async throws -> Harness {
        let h = try await Harness.start(proxyArguments: filter)
        _ = try h.standIn.createPod(name: "web")
        return h
    }

    private func kubectl(
        _ h: Harness, _ arguments: [String], input: Data? = nil, environment: [String: String] = [:]
    ) async throws -> CommandResult {
        try await Tool.run(
            "kubectl", ["--server", h.url, "--request-timeout", "0"] + arguments, input: input,
            environment: environment, timeout: .seconds(60))
    }

    // MARK: exec

    @Test(arguments: [[:], spdyExec])
    func execEchoes(environment: [String: String]) async throws {
        let h = try await start()
        let r = try await kubectl(h, ["exec", "web", "--", "echo", "hello", "world"], environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.text == "hello world\n")
        let stats = h.standIn.stats
        let expected = environment.isEmpty ? "exec websocket v5.channel.k8s.io" : "exec spdy v4.channel.k8s.io"
        #expect(stats.upgrades == [expected: 1])
        #expect(stats.h1Connections == 1)  // the upgrade's own connection; the pod GET rode the HTTP/2 pool
        await h.stop()
    }

    @Test(arguments: [[:], spdyExec])
    func execStdinComesBackWhole(environment: [String: String]) async throws {
        let h = try await start()
        // Large enough that proxyd's tunnel backpressure (256 KiB high water) engages in both directions.
        var input = Data(count: 8 << 20)
        for i in input.indices { input[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        let r = try await kubectl(h, ["exec", "-i", "web", "--", "cat"], input: input, environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.count == input.count)
        #expect(Data(SHA256.hash(data: r.stdout)) == Data(SHA256.hash(data: input)))
        await h.stop()
    }

    @Test(arguments: [[:], spdyExec])
    func execExitCodeAndStderrArrive(environment: [String: String]) async throws {
        let h = try await start()
        let r = try await kubectl(
            h, ["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], environment: environment)
        #expect(r.status == 3)
        #expect(r.text == "out\n")
        #expect(r.stderr.hasPrefix("err\n"), "\(r.stderr)")
        #expect(r.stderr.contains("command terminated with exit code 3"))
        let missing = try await kubectl(h, ["exec", "web", "--", "no-such-command"], environment: environment)
        #expect(missing.status == 127)
        #expect(missing.stderr.contains("no-such-command: command not found"))
        await h.stop()
    }

    @Test func execIsForbiddenWithTheDefaultFilter() async throws {
        let h = try await start(filter: [])
        let r = try await kubectl(h, ["exec", "web", "--", "echo", "hi"])
        #expect(r.status != 0)
        #expect(r.text.isEmpty)
        #expect(r.stderr.contains("Forbidden"), "\(r.stderr)")
        #expect(h.standIn.stats.upgrades.isEmpty)
        await h.stop()
    }

    @Test func execIntoAMissingPodFails() async throws {
        let h = try await start()
        let r = try await kubectl(h, ["exec", "nosuchpod", "--", "echo", "hi"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("pods \"nosuchpod\" not found"), "\(r.stderr)")
        await h.stop()
    }

    @Test(arguments: [[:], spdyExec])
    func attachRelaysStdin(environment: [String: String]) async throws {
        let h = try await start()
        // kubectl attach -i wants a container that keeps stdin open.
        let pod = #"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"tty"},"spec":{"containers":[{"name":"main","image":"x","stdin":true}]}}"#
        let create = try await kubectl(h, ["create", "--validate=false", "-f", "-"], input: Data(pod.utf8))
        #expect(create.status == 0, "\(create.stderr)")
        let r = try await kubectl(h, ["attach", "-i", "tty"], input: Data("typed line\n".utf8), environment: environment)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.text == "typed line\n")
        let expected = environment.isEmpty ? "attach websocket v5.channel.k8s.io" : "attach spdy v4.channel.k8s.io"
        #expect(h.standIn.stats.upgrades == [expected: 1])
        await h.stop()
    }

    /// Upgrades the stand-in declines come back as its plain answers, relayed by proxyd: 404 for a pod that does not
    /// exist, 400 for a subprotocol it does not speak.
    @Test func declinedUpgradesAreRelayed() async throws {
        let h = try await start()
        for (pod, protocolHeader, status) in [
            ("nosuchpod", "Sec-WebSocket-Protocol: v5.channel.k8s.io", "404"),
            ("web", "Sec-WebSocket-Protocol: base64.channel.k8s.io", "400"),
        ] {
            let client = try RawClient(port: h.proxy.port)
            client.send(
                "GET /api/v1/namespaces/default/pods/\(pod)/exec?command=true&stdout=true HTTP/1.1\r\nHost: localhost\r\n"
                    + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\(protocolHeader)\r\n\r\n")
            let response = client.readToEnd()
            #expect(response.hasPrefix("HTTP/1.1 \(status)"), "\(response)")
            #expect(response.contains("\"kind\":\"Status\""))
        }
        #expect(h.standIn.stats.upgrades.isEmpty)
        await h.stop()
    }

    // MARK: port-forward

    @Test(arguments: [[:], spdyPortForward])
    func portForwardCarriesConcurrentAndLargeConnections(environment: [String: String]) async throws {
        let h = try await start()
        var env = environment
        env["HOME"] = NSTemporaryDirectory()
        let forward = try ChildProcess(
            executable: URL(fileURLWithPath: Tool.path("kubectl") ?? "/usr/bin/kubectl"),
            arguments: ["--server", h.url, "port-forward", "--address", "127.0.0.1", "pod/web", "0:8080"],
            environment: env)
        defer { forward.kill9() }
        let out = try await forward.waitForStdout(containing: " -> 8080\n")
        let line = try #require(out.split(separator: "\n").first { $0.hasPrefix("Forwarding from 127.0.0.1:") })
        let port = try #require(Int(line.dropFirst("Forwarding from 127.0.0.1:".count).prefix { $0.isNumber }))

        // Two connections open at once, data interleaved, each gets its own greeting and echo.
        let a = try RawClient(port: port)
        let b = try RawClient(port: port)
        let greeting = "standin pod default/web port 8080\n"
        let payloadA = String(repeating: "a", count: 48 * 1024) + "|end-a"
        let payloadB = String(repeating: "b", count: 48 * 1024) + "|end-b"
        a.send(payloadA)
        b.send(payloadB)
        a.shutdownWrite()
        b.shutdownWrite()
        let echoA = a.readToEnd()
        let echoB = b.readToEnd()
        #expect(echoA == greeting + payloadA)
        #expect(echoB == greeting + payloadB)

        // A third connection after those closed still works: the forward outlives its connections.
        let c = try RawClient(port: port)
        c.send("again")
        c.shutdownWrite()
        #expect(c.readToEnd() == greeting + "again")

        // 4 MiB through one forwarded connection, written from another thread while this one reads the echo.
        let big = try RawClient(port: port)
        var bigPayload = [UInt8](repeating: 0, count: 4 << 20)
        for i in bigPayload.indices { bigPayload[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 11) }
        let sender = UncheckedBox((big, bigPayload))
        Thread.detachNewThread {
            sender.value.0.send(sender.value.1)
            sender.value.0.shutdownWrite()
        }
        var received: [UInt8] = []
        while true {
            let chunk = big.readSome()
            if chunk.isEmpty { break }
            received += chunk
        }
        #expect(received.count == greeting.utf8.count + bigPayload.count)
        #expect(received.dropFirst(greeting.utf8.count).elementsEqual(bigPayload))

        let stats = h.standIn.stats
        let expected =
            environment.isEmpty ? "portforward websocket SPDY/3.1+portforward.k8s.io" : "portforward spdy portforward.k8s.io"
        #expect(stats.upgrades == [expected: 1])  // one upgrade carries every forwarded connection
        #expect(stats.h1Connections == 1)
        // kubectl logs each local connection it forwarded (read from its stdout pipe asynchronously).
        let handled = { forward.stdout.components(separatedBy: "Handling connection for \(port)\n").count - 1 }
        let deadline = ContinuousClock.now + .seconds(5)
        while handled() < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(handled() == 4)

        // kubectl goes away: proxyd closes the tunnel's upstream connection too.
        let withTunnel = stats.activeConnections
        forward.terminate()
        _ = try await forward.waitForExit()
        let closeDeadline = ContinuousClock.now + .seconds(10)
        while h.standIn.stats.activeConnections >= withTunnel, ContinuousClock.now < closeDeadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(h.standIn.stats.activeConnections == withTunnel - 1)
        await h.stop()
    }
}

/// Hands a value to another thread (here a socket that one thread writes to while the other reads from it).
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
