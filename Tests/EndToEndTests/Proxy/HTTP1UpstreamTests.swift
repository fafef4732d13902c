import Crypto
import Foundation
import StandInServer
import Testing

/// The apiserver offers only HTTP/1.1 (ALPN `http/1.1`): proxyd uses its keep-alive HTTP/1.1 pool.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct HTTP1UpstreamTests {
    @Test func requestsUseKeptAliveHTTP1Connections() async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = false }, proxyArguments: ["--loops=1"])
        for _ in 0..<5 {
            let echo = try jsonObject(try await Tool.curl(["\(h.url)/standin/echo/x"]).stdout)
            #expect(echo["protocol"] as? String == "http/1.1")
            #expect(echo["authenticatedBy"] as? String == "token")
        }
        // Sequential requests reuse one upstream connection.
        #expect(h.standIn.stats.tcpConnectionsAccepted == 1)
        #expect(h.standIn.stats.h1Connections == 1)
        await h.stop()
    }

    @Test func bodiesBothWaysOverHTTP1() async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = false })
        let body = Data((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let file = h.directory.appendingPathComponent("b.bin")
        try body.write(to: file)
        for extra in [[], ["-H", "Transfer-Encoding: chunked"]] {
            let r = try await Tool.curl(["-X", "POST", "--data-binary", "@\(file.path)"] + extra + ["\(h.url)/standin/echo/u"])
            let echo = try jsonObject(r.stdout)
            #expect(echo["bodyLength"] as? Int == body.count)
            #expect(echo["bodySHA256"] as? String == SHA256.hash(data: body).hexString)
        }
        let large = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}", "\(h.url)/standin/large?bytes=\(8 << 20)"])
        #expect(large.text == "200 \(8 << 20)")
        await h.stop()
    }

    @Test func parallelRequestsOpenMoreHTTP1Connections() async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = false }, proxyArguments: ["--loops=1"])
        let urls = (0..<20).flatMap { _ in ["\(h.url)/standin/slow?delayMs=200&chunks=1", "-o", "/dev/null"] }
        let r = try await Tool.curl(["--parallel", "--parallel-max", "20", "-w", "%{http_code}\n"] + urls)
        #expect(r.text.split(separator: "\n").allSatisfy { $0 == "200" })
        #expect(r.text.split(separator: "\n").count == 20)
        let accepted = h.standIn.stats.tcpConnectionsAccepted
        #expect(accepted > 1 && accepted <= 20)
        await h.stop()
    }

    @Test func watchStreamsOverHTTP1() async throws {
        let h = try await Harness.start(standIn: { $0.enableHTTP2 = false })
        try h.standIn.createPod(name: "a")
        let client = try RawClient(port: h.proxy.port)
        client.send("GET /api/v1/namespaces/default/pods?watch=true HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(client.read(until: "\"a\"").contains("\"a\""))
        try h.standIn.createPod(name: "b")
        #expect(client.read(until: "\"b\"").contains("\"b\""))
        await h.stop()
    }
}
