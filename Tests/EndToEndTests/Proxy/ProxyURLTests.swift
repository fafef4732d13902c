import Foundation
import StandInServer
import Testing

/// The cluster's `proxy-url`: every upstream connection (the pooled ones and each upgrade's own) goes through an
/// HTTP CONNECT proxy (plain or TLS) or a SOCKS5 proxy; proxy failures become 502 `Status` answers and proxyd keeps
/// serving.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProxyURLTests {
    enum ProxyCase: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case http, https, socks5
        var testDescription: String { rawValue }
        var kind: TestForwardProxy.Kind { self == .socks5 ? .socks5 : .connect }
    }

    /// Starts a test proxy of that kind (the https one serves the stand-in's own certificate, so the cluster CA
    /// verifies it, as Go's Transport does) and proxyd with a kubeconfig whose cluster points through it.
    private func start(
        _ proxyCase: ProxyCase, credentials: (user: String, password: String)? = nil,
        userInfo: String = "", serverHost: String = "127.0.0.1", proxyPort: Int = 0,
        proxyCertificate: (certificatePEM: String, keyPEM: String)? = nil
    ) async throws -> (Harness, TestForwardProxy) {
        let holder = ProxyHolder()
        let h = try await Harness.start(kubeconfig: { standIn, dir in
            let proxy = try TestForwardProxy.start(
                kind: proxyCase.kind,
                tls: proxyCase == .https
                    ? proxyCertificate ?? (standIn.serverCertificatePEM, standIn.serverKeyPEM) : nil,
                credentials: credentials, port: proxyPort)
            holder.proxy = proxy
            var yaml = standIn.kubeconfigYAML(token: "standin-token", clientCert: false)
            yaml = yaml.replacingOccurrences(
                of: "    server: https://127.0.0.1:", with: "    server: https://\(serverHost):")
            yaml = yaml.replacingOccurrences(
                of: "    certificate-authority-data:",
                with: "    proxy-url: \(proxyCase.rawValue)://\(userInfo)127.0.0.1:\(proxy.port)\n    certificate-authority-data:")
            let path = dir.appendingPathComponent("kubeconfig-proxied").path
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        })
        return (h, holder.proxy!)
    }

    private func get(_ h: Harness, _ path: String = "/api") async throws -> (code: String, body: String) {
        let r = try await Tool.curl(["-w", "\n%{http_code}", "\(h.url)\(path)"])
        let text = r.text
        let split = text.lastIndex(of: "\n").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) }
        return (split?.1 ?? "", split?.0 ?? text)
    }

    /// Retries until proxyd answers 200 (its pool backs off for up to 2 s after a failed connect).
    private func eventually200(_ h: Harness) async throws -> Bool {
        for _ in 0..<50 {
            if try await get(h).code == "200" { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    private func websocketEcho(_ h: Harness) throws -> Bool {
        let client = try RawClient(port: h.proxy.port)
        defer { client.close() }
        client.send(
            "GET /standin/tunnel?ports=80 HTTP/1.1\r\nHost: localhost\r\n"
                + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")
        var head = client.read(until: "auth=")
        if !head.hasSuffix("\n") { head += client.read(until: "\n") }
        guard head.hasPrefix("HTTP/1.1 101"), head.hasSuffix("auth=token\n") else { return false }
        let payload = Array(("through the proxy " + String(repeating: "p", count: 50_000)).utf8)
        client.send(payload)
        var echoed: [UInt8] = []
        while echoed.count < payload.count {
            let chunk = client.readSome()
            if chunk.isEmpty { break }
            echoed += chunk
        }
        return echoed == payload
    }

    @Test(arguments: ProxyCase.allCases)
    func requestsAndUpgradesGoThroughTheProxy(proxyCase: ProxyCase) async throws {
        let (h, proxy) = try await start(proxyCase)
        let r = try await get(h)
        #expect(r.code == "200", "\(r.body) \(h.proxy.child.stderr)")
        #expect(r.body.contains("\"kind\":\"APIVersions\""))
        let pooled = proxy.stats.tunnels
        #expect(pooled >= 1)
        #expect(proxy.stats.targets.allSatisfy { $0 == "127.0.0.1:\(h.standIn.port)" })
        #expect(h.standIn.stats.requestsByPath["/api", default: 0] >= 1)

        // An upgrade opens its own HTTP/1.1 connection: through the proxy as well.
        #expect(try websocketEcho(h))
        #expect(proxy.stats.tunnels == pooled + 1)
        #expect(h.standIn.stats.h1Connections == 1)
        // Every connection the stand-in accepted came through the proxy.
        #expect(h.standIn.stats.tcpConnectionsAccepted == proxy.stats.tunnels)
        await h.stop()
        await proxy.stop()
    }

    @Test func kubectlThroughProxydThroughASOCKSProxy() async throws {
        let (h, proxy) = try await start(.socks5, serverHost: "localhost")
        try h.standIn.createPod(name: "via-socks")
        let pods = try await Tool.run("kubectl", ["--server", h.url, "get", "pods", "-o", "name"])
        #expect(pods.status == 0, "\(pods.stderr)")
        #expect(pods.text == "pod/via-socks\n")
        #expect(proxy.stats.tunnels >= 1)
        await h.stop()
        await proxy.stop()
    }

    @Test func socksSendsDNSNamesToTheProxyAndIPsAsAddresses() async throws {
        let (named, namedProxy) = try await start(.socks5, serverHost: "localhost")
        #expect(try await get(named).code == "200")
        #expect(namedProxy.stats.socksAddressTypes.first == 3)
        #expect(namedProxy.stats.targets.first == "localhost:\(named.standIn.port)")
        await named.stop()
        await namedProxy.stop()

        let (ip, ipProxy) = try await start(.socks5)
        #expect(try await get(ip).code == "200")
        #expect(ipProxy.stats.socksAddressTypes.first == 1)
        await ip.stop()
        await ipProxy.stop()
    }

    @Test(arguments: [ProxyCase.http, .socks5])
    func proxyCredentialsFromTheURL(proxyCase: ProxyCase) async throws {
        let (h, proxy) = try await start(
            proxyCase, credentials: ("al@ice", "pa:ss"), userInfo: "al%40ice:pa%3Ass@")
        #expect(try await get(h).code == "200")
        let expected = proxyCase == .http ? "Basic " + Data("al@ice:pa:ss".utf8).base64EncodedString() : "al@ice:pa:ss"
        #expect(proxy.stats.credentialsSeen.first == expected)
        #expect(proxy.stats.authFailures == 0)
        await h.stop()
        await proxy.stop()

        let (wrong, wrongProxy) = try await start(
            proxyCase, credentials: ("al@ice", "pa:ss"), userInfo: "al%40ice:n0tThePassword@")
        let r = try await get(wrong)
        #expect(r.code == "502")
        #expect(r.body.contains("\"kind\":\"Status\""))
        if proxyCase == .http {
            #expect(r.body.contains("the proxy answered CONNECT with 407 Proxy Authentication Required"))
        } else {
            #expect(r.body.contains("username/password authentication failed"))
        }
        #expect(!r.body.contains("n0tThePassword"))
        #expect(wrongProxy.stats.authFailures >= 1)
        await wrong.stop()
        #expect(!wrong.proxy.child.stderr.contains("n0tThePassword"))
        #expect(!wrong.proxy.child.stdout.contains("n0tThePassword"))
        await wrongProxy.stop()
    }

    @Test(arguments: [ProxyCase.http, .https, .socks5])
    func aRefusingProxyGives502AndProxydRecovers(proxyCase: ProxyCase) async throws {
        let (h, proxy) = try await start(proxyCase)
        proxy.behaviour = .refuse(proxyCase == .socks5 ? 2 : 403)
        let r = try await get(h)
        #expect(r.code == "502")
        #expect(r.body.contains("\"kind\":\"Status\"") && r.body.contains("\"code\":502"))
        if proxyCase == .socks5 {
            #expect(r.body.contains("socks connect tcp 127.0.0.1:\(proxy.port)->127.0.0.1:\(h.standIn.port): connection not allowed by ruleset"))
        } else {
            #expect(r.body.contains("proxyconnect tcp 127.0.0.1:\(proxy.port): the proxy answered CONNECT with 403"))
        }
        // An upgrade through the refusing proxy: a 502 Status too.
        let upgrade = try RawClient(port: h.proxy.port)
        upgrade.send("GET /api/v1/namespaces/default/pods/p/portforward HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
        let response = upgrade.readToEnd()
        #expect(response.hasPrefix("HTTP/1.1 502"))
        #expect(response.contains("\"kind\":\"Status\""))
        #expect(h.standIn.stats.tcpConnectionsAccepted == 0)

        proxy.behaviour = .tunnel
        #expect(try await eventually200(h))
        #expect(try websocketEcho(h))
        await h.stop()
        await proxy.stop()
    }

    @Test func anHTTPSProxyIsVerifiedWithTheClusterCA() async throws {
        // A certificate from another CA: proxyd must not talk through it.
        let other = try await StandIn.start(StandInConfiguration())
        let (h, proxy) = try await start(
            .https, proxyCertificate: (other.serverCertificatePEM, other.serverKeyPEM))
        try await other.stop()
        let r = try await get(h)
        #expect(r.code == "502")
        #expect(r.body.contains("proxyconnect tcp 127.0.0.1:\(proxy.port): TLS: "))
        #expect(r.body.contains("certificate verify failed"))
        #expect(proxy.stats.targets.isEmpty)
        #expect(h.standIn.stats.tcpConnectionsAccepted == 0)
        await h.stop()
        await proxy.stop()
    }

    /// Opening the tunnel shares the 30 s connect timeout; a silent proxy gives a 504 Status.
    @Test func aSilentProxyTimesOut() async throws {
        let (h, proxy) = try await start(.http)
        proxy.behaviour = .silent
        let started = ContinuousClock.now
        let r = try await get(h)
        let elapsed = ContinuousClock.now - started
        #expect(r.code == "504")
        #expect(r.body.contains("proxyconnect tcp 127.0.0.1:\(proxy.port): the proxy did not open the tunnel in time"))
        #expect(elapsed >= .seconds(29) && elapsed < .seconds(45))
        await h.stop()
        await proxy.stop()
    }

    @Test func nothingListeningGives502AndTheProxyComingBackRestoresService() async throws {
        let (h, proxy) = try await start(.http)
        let port = proxy.port
        await proxy.stop()
        let r = try await get(h)
        #expect(r.code == "502")
        #expect(r.body.contains("proxyconnect tcp: dial tcp 127.0.0.1:\(port): connect: connection refused"))

        let back = try TestForwardProxy.start(kind: .connect, port: port)
        #expect(try await eventually200(h))
        #expect(back.stats.tunnels >= 1)
        await h.stop()
        await back.stop()
    }
}

/// Without a `proxy-url`, `HTTPS_PROXY` applies (kubectl's transport honours it too). Loopback servers are never
/// proxied that way, so the server is named `apiserver.test` (in its certificate; the test proxy dials it as
/// 127.0.0.1, and proxyd never resolves it itself).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ProxyEnvironmentTests {
    @Test func httpsProxyFromTheEnvironment() async throws {
        let proxy = try TestForwardProxy.start(kind: .connect)
        let h = try await Harness.start(
            standIn: { $0.serverNames = ["apiserver.test", "127.0.0.1"] },
            kubeconfig: { standIn, dir in
                let yaml = standIn.kubeconfigYAML(token: "standin-token", clientCert: false).replacingOccurrences(
                    of: "    server: https://127.0.0.1:", with: "    server: https://apiserver.test:")
                let path = dir.appendingPathComponent("kubeconfig-named").path
                try yaml.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            },
            environment: ["HTTPS_PROXY": "127.0.0.1:\(proxy.port)", "NO_PROXY": "example.com,10.0.0.0/8"])
        let r = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/api"])
        #expect(r.text == "200")
        #expect(proxy.stats.tunnels >= 1)
        #expect(proxy.stats.targets.first == "apiserver.test:\(h.standIn.port)")
        await h.stop()
        await proxy.stop()
    }
}

private final class ProxyHolder: @unchecked Sendable {
    var proxy: TestForwardProxy?
}

