import Foundation
import StandInServer
import Testing

/// Issue 12 part 3: exec blocked by what the request means (the kubelet's endpoints behind the node proxy, in the
/// default reject list), and `--read-only`. The path forms are covered in NodeProxyRejectTests; here the requests
/// go through the binary to the stand-in, which answers node-proxy paths with an echo when they get there.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ExecBlockingTests {
    func status(_ h: Harness, _ arguments: [String]) async throws -> String {
        try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}"] + arguments).text
    }

    @Test func nodeProxyExecIsRejectedForEveryMethodAndSpelling() async throws {
        let h = try await Harness.start()
        let exec = "\(h.url)/api/v1/nodes/node-1/proxy/exec/default/p/c?command=sh"
        for method in ["GET", "POST", "PUT", "DELETE"] {
            #expect(try await status(h, ["-X", method, exec]) == "403", "\(method)")
        }
        // A WebSocket exec is a GET with an upgrade.
        #expect(try await status(h, ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket", exec]) == "403")
        for path in ["port%46orward/default/p", "%65xec/default/p/c", "run/default/p/c", "attach/default/p/c", "cri/exec/x", "EXEC/default/p/c"] {
            #expect(try await status(h, ["\(h.url)/api/v1/nodes/node-1:10250/proxy/\(path)"]) == "403", "\(path)")
        }
        // Unclean forms are redirected to the clean path, which is rejected.
        #expect(try await status(h, ["-L", "\(h.url)/api/v1/nodes/node-1/proxy/stats/../exec/default/p/c"]) == "403")
        #expect(h.standIn.stats.requestsByPath.keys.allSatisfy { !$0.contains("/proxy/") })
        // The rest of the node proxy still works.
        let stats = try await Tool.curl(["\(h.url)/api/v1/nodes/node-1/proxy/stats/summary"])
        #expect(try jsonObject(stats.stdout)["path"] as? String == "/api/v1/nodes/node-1/proxy/stats/summary")
        await h.stop()
        // As kubectl's own rules, an explicit --reject-paths replaces the default.
        let relaxed = try await Harness.start(proxyArguments: ["--reject-paths=^/api/.*/pods/.*/exec"])
        #expect(try await status(relaxed, ["\(relaxed.url)/api/v1/nodes/node-1/proxy/exec/default/p/c"]) == "200")
        await relaxed.stop()
    }

    @Test func readOnlyLetsOnlyLookingThrough() async throws {
        // --reject-paths= so that it is --read-only, not the exec rule, that stops the upgrade below.
        let h = try await Harness.start(proxyArguments: ["--read-only", "--reject-paths="])
        #expect(try await status(h, ["\(h.url)/api/v1/namespaces/default/configmaps"]) == "200")
        #expect(try await status(h, ["-I", "\(h.url)/api/v1/nodes/node-1/proxy/healthz"]) == "200")  // echoed by the stand-in
        let options = try await Tool.curl(["-X", "OPTIONS", "-w", "\n%{http_code}", "\(h.url)/api"])
        #expect(!options.text.contains("--read-only"))
        let seen = h.standIn.stats.streamsOpened
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = try await Tool.curl(["-X", method, "-d", "{}", "-D", "-", "\(h.url)/api/v1/namespaces/default/configmaps"])
            #expect(r.text.hasPrefix("HTTP/1.1 405 "), "\(method)")
            #expect(r.text.contains("Allow: GET, HEAD, OPTIONS"))
            #expect(r.text.contains("--read-only"))
        }
        // No upgrade of any kind: exec, port-forward, a WebSocket watch.
        for path in ["/api/v1/namespaces/default/pods/p/exec?command=sh", "/api/v1/namespaces/default/pods/p/portforward",
                     "/api/v1/namespaces/default/configmaps?watch=1"] {
            let client = try RawClient(port: h.proxy.port)
            client.send("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            let text = client.readToEnd()
            #expect(text.hasPrefix("HTTP/1.1 403 "), "\(path)")
            #expect(text.contains("--read-only"))
        }
        #expect(h.standIn.stats.streamsOpened == seen)
        #expect(h.standIn.stats.upgrades.isEmpty)
        await h.stop()
    }
}
