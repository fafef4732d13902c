import Foundation
import StandInServer
import Testing

/// `/metrics` on its own listener, checked against traffic of known outcome and parsed by a real Prometheus text
/// parser (Python's prometheus_client), not by our own code.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct MetricsTests {
    /// The samples of a scrape as `name{label=value,...}` → value, plus `TYPE name` → type, from prometheus_client.
    static func scrape(_ url: String) async throws -> [String: Any] {
        let text = try await Tool.curl(["\(url)/metrics"])
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = {}
            for family in text_string_to_metric_families(sys.stdin.read()):
                out["TYPE " + family.name] = family.type
                for s in family.samples:
                    labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
                    out["%s{%s}" % (s.name, labels)] = s.value
            print(json.dumps(out))
            """
        let parsed = try await Tool.run("python3", ["-c", script], input: text.stdout)
        guard parsed.status == 0 else { throw ChildError("prometheus_client could not parse /metrics: \(parsed.stderr)") }
        return try jsonObject(parsed.stdout)
    }

    static func value(_ samples: [String: Any], _ key: String) -> Double? {
        (samples[key] as? NSNumber)?.doubleValue
    }

    @Test func countersMatchKnownTraffic() async throws {
        let h = try await Harness.start(
            proxyArguments: ["--metrics-bind-address=127.0.0.1:0", "--reject-methods=^PATCH$", "--loops=2"])
        let metrics = try #require(h.proxy.adminURL(serving: "metrics"))
        let before = try await Self.scrape(metrics)
        #expect(Self.value(before, "proxyd_http_requests_in_flight{}") == 0)

        var responseBytes = 0
        func request(_ args: [String], expect code: String) async throws {
            let r = try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code} %{size_download}"] + args)
            let parts = r.text.split(separator: " ")
            #expect(parts.first.map(String.init) == code, "\(args)")
            responseBytes += Int(parts.last ?? "0") ?? 0
        }
        for _ in 0..<5 { try await request(["\(h.url)/api"], expect: "200") }
        for _ in 0..<2 { try await request(["-H", "Host: evil.example", "\(h.url)/api"], expect: "403") }
        try await request(["\(h.url)/api/v1/namespaces/default/pods/p/exec"], expect: "403")
        try await request(["-X", "PATCH", "\(h.url)/api"], expect: "403")
        // What another web page sends: refused by the cross-origin guard.
        try await request(
            ["-X", "DELETE", "-H", "Origin: http://evil.example", "\(h.url)/api/v1/namespaces/default/pods/x"],
            expect: "403")
        try await request(["\(h.url)/api/v1/namespaces/default/pods/nope"], expect: "404")
        var requestBytes = 0
        for i in 0..<3 {
            let body = #"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m\#(i)"},"data":{"k":"\#(String(repeating: "v", count: 100 * i))"}}"#
            requestBytes += body.utf8.count
            try await request(
                ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body,
                 "\(h.url)/api/v1/namespaces/default/configmaps"], expect: "201")
        }
        // One request the parser refuses (both Content-Length and Transfer-Encoding: smuggling-prone).
        let raw = try RawClient(port: h.proxy.port)
        raw.send("GET /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        #expect(raw.readToEnd().hasPrefix("HTTP/1.1 400"))
        raw.close()
        // A watch that is still open when scraped.
        try h.standIn.createPod(name: "w1")
        let watch = try RawClient(port: h.proxy.port)
        watch.send("GET /api/v1/namespaces/default/pods?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(watch.read(until: "\"w1\"").hasPrefix("HTTP/1.1 200"))

        var after = try await Self.scrape(metrics)
        for _ in 0..<50 where Self.value(after, "proxyd_client_connections{}") != 1 {
            // The refused request's connection closes once proxyd sees the client's EOF.
            try await Task.sleep(for: .milliseconds(100))
            after = try await Self.scrape(metrics)
        }
        func v(_ key: String) -> Double? { Self.value(after, key) }
        #expect(v("proxyd_http_requests_total{code=200,method=GET}") == 5)
        #expect(v("proxyd_http_requests_total{code=403,method=GET}") == 3)
        #expect(v("proxyd_http_requests_total{code=403,method=PATCH}") == 1)
        #expect(v("proxyd_http_requests_total{code=404,method=GET}") == 1)
        #expect(v("proxyd_http_requests_total{code=201,method=POST}") == 3)
        #expect(v("proxyd_http_malformed_requests_total{code=400}") == 1)
        #expect(v("proxyd_filter_rejections_total{filter=host}") == 2)
        #expect(v("proxyd_filter_rejections_total{filter=path}") == 1)
        #expect(v("proxyd_filter_rejections_total{filter=method}") == 1)
        #expect(v("proxyd_filter_rejections_total{filter=origin}") == 1)
        #expect(v("proxyd_http_requests_total{code=403,method=DELETE}") == 1)
        // The open watch is in flight and counted as a watch, not yet as a finished request or in the latency.
        #expect(v("proxyd_http_requests_in_flight{}") == 1)
        #expect(v("proxyd_watches{}") == 1)
        #expect(v("proxyd_http_request_duration_seconds_count{method=GET}") == 9)
        #expect(v("proxyd_http_request_duration_seconds_count{method=POST}") == 3)
        #expect(v("proxyd_http_request_duration_seconds_bucket{le=+Inf,method=GET}") == 9)
        #expect((v("proxyd_http_request_duration_seconds_sum{method=GET}") ?? 0) > 0)
        #expect(v("proxyd_http_request_body_bytes_total{}") == Double(requestBytes))
        // The watch's first event is part of the body bytes too; the rest came from the finished requests.
        let watchBytes = (v("proxyd_http_response_body_bytes_total{}") ?? 0) - Double(responseBytes)
        #expect(watchBytes > 0 && watchBytes < 65536, "\(watchBytes)")
        #expect(v("proxyd_client_connections_accepted_total{}") == 16)
        #expect(v("proxyd_client_connections{}") == 1)
        #expect((v("proxyd_upstream_connections_opened_total{protocol=h2}") ?? 0) >= 1)
        #expect((v("proxyd_upstream_streams{}") ?? 0) == 1)
        #expect(v("proxyd_upstream_connection_errors_total{kind=connect}") == 0)
        // The library versions are the ones loaded at run time: OpenSSL's as its command-line tool reports it.
        let openssl = try await Tool.run("openssl", ["version"]).text.split(separator: " ").dropFirst().first.map(String.init)
        #expect(label("openssl", after) == openssl)
        #expect(label("nghttp2", after).hasPrefix("1."))
        #expect(v("proxyd_build_info{nghttp2=\(label("nghttp2", after)),openssl=\(label("openssl", after)),version=0.1.0}") == 1)
        #expect((v("process_resident_memory_bytes{}") ?? 0) > 1_000_000)
        #expect(after["TYPE proxyd_http_requests"] as? String == "counter")
        #expect(after["TYPE proxyd_http_request_duration_seconds"] as? String == "histogram")
        #expect(after["TYPE proxyd_watches"] as? String == "gauge")

        // On the proxy's own port, /metrics is an apiserver path like any other: proxied, not answered by proxyd.
        #expect(try await Tool.curl(["-o", "/dev/null", "-w", "%{http_code}", "\(h.url)/metrics"]).text == "404")
        // The client goes away; proxyd notices when a write fails (the second event after the close: the first
        // only draws the peer's reset), and the watch is no longer counted.
        watch.close()
        var watches: Double? = 1
        for i in 0..<50 where watches != 0 {
            if i < 5 { try h.standIn.createPod(name: "w\(i + 2)") }
            try await Task.sleep(for: .milliseconds(100))
            watches = Self.value(try await Self.scrape(metrics), "proxyd_watches{}")
        }
        #expect(watches == 0)
        await h.stop()
    }

    /// A label value of proxyd_build_info, read from the parsed sample's key.
    private func label(_ name: String, _ samples: [String: Any]) -> String {
        guard let key = samples.keys.first(where: { $0.hasPrefix("proxyd_build_info{") }) else { return "?" }
        for pair in key.dropFirst("proxyd_build_info{".count).dropLast().split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2, kv[0] == name { return String(kv[1]) }
        }
        return "?"
    }

    @Test func adminListenersNeverShareTheProxysAddress() async throws {
        let h = try await Harness.start()
        let clash = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--port=18765",
                        "--metrics-bind-address=127.0.0.1:18765"])
        #expect(try await clash.waitForExit() == 1)
        #expect(clash.stderr.contains("the proxy itself listens there"))
        let bad = try ChildProcess(
            executable: BuildProducts.proxyd,
            arguments: ["--kubeconfig", h.directory.appendingPathComponent("kubeconfig").path, "--port=0",
                        "--healthz-bind-address=127.0.0.1"])
        #expect(try await bad.waitForExit() == 1)
        #expect(bad.stderr.contains("invalid argument \"127.0.0.1\" for \"--healthz-bind-address\": missing port"))
        await h.stop()
    }
}
