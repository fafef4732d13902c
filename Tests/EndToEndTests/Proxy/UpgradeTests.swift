import Foundation
import StandInServer
import Testing

/// Protocol upgrades (exec, attach, port-forward) through proxyd: a dedicated HTTP/1.1 TLS connection per upgrade,
/// credentials added, `101` relayed, then a transparent byte tunnel.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct UpgradeTests {
    @Test(arguments: ["websocket", "SPDY/3.1"])
    func upgradeBecomesAByteTunnelWithCredentials(protocolName: String) async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send(
            "GET /standin/tunnel?ports=80 HTTP/1.1\r\nHost: localhost\r\n"
                + "Connection: Upgrade\r\nUpgrade: \(protocolName)\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")
        var head = client.read(until: "auth=")
        if !head.hasSuffix("\n") { head += client.read(until: "\n") }
        #expect(head.hasPrefix("HTTP/1.1 101"))
        #expect(head.hasSuffix("standin tunnel: protocol=\(protocolName) path=/standin/tunnel?ports=80 auth=token\n"))
        // Bytes both ways, including ones that look like HTTP.
        let payload = Array(("hello\u{0}\u{1}\u{2} GET / HTTP/1.1\r\n\r\n" + String(repeating: "x", count: 100_000)).utf8)
        client.send(payload)
        var echoed: [UInt8] = []
        while echoed.count < payload.count {
            let chunk = client.readSome()
            if chunk.isEmpty { break }
            echoed += chunk
        }
        #expect(echoed == payload)
        client.close()  // ends the tunnel, so the graceful stop below need not wait for it
        #expect(h.standIn.stats.h1Connections == 1)  // upgrades never ride the HTTP/2 pool
        await h.stop()
    }

    /// `echo data | kubectl exec -i …`: the client half-closes after its input; the answer must still arrive whole.
    @Test func clientHalfCloseIsPassedOnAndTheRestStillArrives() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /half HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
        #expect(client.read(until: "auth=").hasPrefix("HTTP/1.1 101"))
        _ = client.read(until: "\n")
        // Sent whole before reading: keep it within what socket buffers hold, or an echo can deadlock by design.
        let payload = [UInt8](repeating: UInt8(ascii: "z"), count: 256 * 1024)
        client.send(payload)
        client.shutdownWrite()
        var echoed = 0
        while true {
            let chunk = client.readSome()
            if chunk.isEmpty { break }  // EOF: proxyd passed the end on after the last byte
            echoed += chunk.count
        }
        #expect(echoed == payload.count)
        await h.stop()
    }

    @Test func keepaliveFlagIsAcceptedLikeKubectls() async throws {
        let h = try await Harness.start(proxyArguments: ["--keepalive=30s"])
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        #expect(client.read(until: "auth=").hasPrefix("HTTP/1.1 101"))
        client.close()
        await h.stop()
        let bad = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", "/nonexistent", "--keepalive=soon"])
        #expect(try await bad.waitForExit() == 1)
        #expect(bad.stderr.contains("invalid argument \"soon\" for \"--keepalive\" flag"))
    }

    @Test func upgradeToExecIsFilteredByDefault() async throws {
        let h = try await Harness.start()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods/p/exec?command=sh HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 403"))
        #expect(response.hasSuffix("Forbidden\n"))
        await h.stop()
    }

    @Test func refusedUpgradeIsRelayed() async throws {
        // The stand-in has no upgrader for this protocol: it answers the request normally (an error status),
        // which proxyd relays when it is 400 or more.
        let h = try await Harness.start(proxyArguments: ["--reject-paths=^/nothing"])
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /standin/status/403 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: unknown-proto\r\n\r\n")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 403"))
        #expect(response.contains("\"kind\":\"Status\""))
        await h.stop()
    }

    @Test func h2cUpgradeIsIgnoredAndAnsweredNormally() async throws {
        let h = try await Harness.start()
        let r = try await Tool.curl(["--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "\(h.url)/api"])
        #expect(r.text == "200 1.1")
        await h.stop()
    }

    @Test func upgradeWhileApiserverIsDownGivesStatus() async throws {
        let h = try await Harness.start()
        try await h.standIn.stop()
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods/p/portforward HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
        let response = client.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 503") || response.hasPrefix("HTTP/1.1 502"))
        #expect(response.contains("\"kind\":\"Status\""))
        await h.proxy.stop()
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct LocationTests {
    @Test func redirectToTheApiserverIsRewrittenToTheProxy() async throws {
        let h = try await Harness.start(proxyArguments: ["--api-prefix=/custom/"])
        let r = try await Tool.curl(["-i", "\(h.url)/custom/standin/redirect"])
        #expect(r.text.hasPrefix("HTTP/1.1 302"))
        #expect(r.text.contains("Location: /custom/api/v1/namespaces\r\n"))
        // Following it stays on the proxy and works.
        let followed = try await Tool.curl(["-L", "-o", "/dev/null", "-w", "%{http_code} %{url_effective}", "\(h.url)/custom/standin/redirect"])
        #expect(followed.text == "200 \(h.url)/custom/api/v1/namespaces")
        await h.stop()
    }
}

/// Service, pod and node proxy paths (dashboards in a browser) pass byte-exact; escapes cannot leave the prefix.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ServiceProxyPathTests {
    @Test(arguments: [
        "/api/v1/namespaces/kube-system/services/https:kubernetes-dashboard:/proxy/",
        "/api/v1/namespaces/monitoring/services/grafana:3000/proxy/d/abc?orgId=1&from=now-1h",
        "/api/v1/namespaces/default/services/http:svc:8080/proxy/a%2Fb/c%20d/",
        "/api/v1/namespaces/default/pods/web-0:8080/proxy/metrics",
        "/api/v1/nodes/node-1:10250/proxy/stats/summary",
    ])
    func proxyPathsPassByteExact(path: String) async throws {
        let h = try await Harness.start()
        let echo = try jsonObject(try await Tool.curl(["--path-as-is", "\(h.url)\(path)"]).stdout)
        #expect(echo["requestURI"] as? String == path)
        await h.stop()
    }

    @Test func customPrefixKeepsEscapesAndCannotBeEscaped() async throws {
        let h = try await Harness.start(proxyArguments: ["--api-prefix=/k8s/"])
        let echo = try jsonObject(try await Tool.curl(["--path-as-is", "\(h.url)/k8s/standin/echo/a%2Fb?x=%20"]).stdout)
        #expect(echo["requestURI"] as? String == "/standin/echo/a%2Fb?x=%20")  // kubectl would decode %2F here
        for escape in ["/k8s/../api", "/k8s/%2e%2e/api", "/k8s//api"] {
            let r = try await Tool.curl(["--path-as-is", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "\(h.url)\(escape)"])
            #expect(r.text.hasPrefix("301 "), "\(escape): \(r.text)")
            #expect(!r.text.contains("standin"))
        }
        #expect(try await Tool.curl(["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"]).text == "404")
        await h.stop()
    }
}
