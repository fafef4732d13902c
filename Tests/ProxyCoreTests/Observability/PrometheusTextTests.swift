import Testing

@testable import ProxyCore

/// The exposition encoder on its own: escaping, number formatting, histogram lines (the end-to-end test parses a
/// whole scrape with Python's prometheus_client).
@Suite struct PrometheusTextTests {
    private func text(_ build: (inout PrometheusText) -> Void) -> String {
        var out = PrometheusText()
        build(&out)
        return String(decoding: out.bytes, as: UTF8.self)
    }

    @Test func familyAndSamples() {
        let t = text { out in
            out.family("proxyd_x_total", .counter, help: "Things, counted.")
            out.sample("proxyd_x_total", ["a": "1", "b": "two"], 3)
            out.sample("proxyd_x_total", 4)
        }
        #expect(t == """
            # HELP proxyd_x_total Things, counted.
            # TYPE proxyd_x_total counter
            proxyd_x_total{a="1",b="two"} 3
            proxyd_x_total 4

            """)
    }

    @Test func labelValuesAndHelpAreEscaped() {
        let t = text { out in
            out.family("m", .gauge, help: "back\\slash and\nnewline")
            out.sample("m", ["v": "q\"uote\\back\nline"], 1)
        }
        #expect(t == "# HELP m back\\\\slash and\\nnewline\n# TYPE m gauge\nm{v=\"q\\\"uote\\\\back\\nline\"} 1\n")
    }

    @Test(arguments: [
        (0.0, "0"), (3.0, "3"), (-2.0, "-2"), (0.005, "0.005"), (1e-05, "1e-05"), (1.5, "1.5"),
        (Double.infinity, "+Inf"), (-Double.infinity, "-Inf"), (Double.nan, "NaN"), (1e20, "1e+20"),
    ])
    func floats(_ value: Double, _ expected: String) {
        #expect(PrometheusText.format(value) == expected)
    }

    @Test func histogramBucketsAreCumulative() {
        let t = text { out in
            out.family("h", .histogram, help: "h")
            out.histogram("h", labels: [("m", "GET")], bounds: [0.1, 1], counts: [2, 0, 3], sum: 7.25)
        }
        #expect(t == """
            # HELP h h
            # TYPE h histogram
            h_bucket{m="GET",le="0.1"} 2
            h_bucket{m="GET",le="1"} 2
            h_bucket{m="GET",le="+Inf"} 5
            h_sum{m="GET"} 7.25
            h_count{m="GET"} 5

            """)
    }

    @Test func latencyBucketIndex() {
        #expect(LatencyBuckets.index(nanos: 0) == 0)
        #expect(LatencyBuckets.index(nanos: 500_000) == 0)  // le is inclusive
        #expect(LatencyBuckets.index(nanos: 500_001) == 1)
        #expect(LatencyBuckets.index(nanos: 1_000_000_000) == LatencyBuckets.bounds.firstIndex(of: 1)!)
        #expect(LatencyBuckets.index(nanos: 61_000_000_000) == LatencyBuckets.bounds.count)
    }

    @Test func snapshotsAddUp() {
        var a = MetricsSnapshot()
        a.requests[0 * 1000 + 200] = 2
        a.durations[0, default: Histogram()].observe(nanos: 1_000)
        a.filterRejections[FilterRule.host.metricIndex] = 1
        a.upstreamConnections.counts[0][UpstreamConnectionCounts.State.idle.rawValue] = 1
        var b = MetricsSnapshot()
        b.requests[0 * 1000 + 200] = 3
        b.requests[2 * 1000 + 201] = 1
        b.durations[0, default: Histogram()].observe(nanos: 2_000_000_000)
        b.requestsInFlight = 1
        b.upstreamConnections.streams = 4
        a.add(b)
        #expect(a.requests == [200: 5, 2201: 1])
        #expect(a.durations[0]?.count == 2)
        #expect(a.durations[0]?.sumNanos == 2_000_001_000)
        #expect(a.requestsInFlight == 1)
        #expect(a.filterRejections == [1, 0, 0, 0])
        #expect(a.upstreamConnections.counts[0] == [0, 1, 0])
        #expect(a.upstreamConnections.streams == 4)
    }

    @Test func reportRendersEveryFamily() {
        var loops = MetricsSnapshot()
        loops.requests[1 * 1000 + 200] = 1
        loops.requests[9 * 1000 + 0] = 1
        let report = MetricsReport(
            loops: loops, service: ServiceCounters().values, process: ProcessMetrics(cpuSeconds: 0.5),
            build: .init(version: "9.9.9", openSSL: "3.0.0", nghttp2: "1.52.0"))
        let t = String(decoding: report.render(), as: UTF8.self)
        #expect(t.contains("proxyd_build_info{version=\"9.9.9\",openssl=\"3.0.0\",nghttp2=\"1.52.0\"} 1\n"))
        #expect(t.contains("proxyd_http_requests_total{method=\"HEAD\",code=\"200\"} 1\n"))
        #expect(t.contains("proxyd_http_requests_total{method=\"OTHER\",code=\"0\"} 1\n"))
        #expect(t.contains("process_cpu_seconds_total 0.5\n"))
        // Every family is announced once, with HELP and TYPE.
        let types = t.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }
        #expect(Set(types).count == types.count)
        #expect(types.count == t.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.count)
        #expect(types.count == 28)  // 22 proxyd_ families (docs/metrics.md) and 6 process_ ones
    }
}

@Suite struct RequestKindTests {
    @Test(arguments: [
        ("/api/v1/pods", RequestKind.regular),
        ("/api/v1/pods?watch=true", .watch),
        ("/api/v1/pods?labelSelector=a&watch=1", .watch),
        ("/api/v1/pods?watch=false", .regular),
        ("/api/v1/watch/pods", .watch),
        ("/apis/apps/v1/watch/namespaces/x/deployments", .watch),
        ("/apis/apps/v1/namespaces/watch/deployments", .regular),
        ("/api/v1/namespaces/d/pods/p/log?follow=true", .follow),
        ("/api/v1/namespaces/d/pods/p/log?follow=0", .regular),
        ("/api/v1/pods?watch=True", .watch),
        ("/api/v1/pods?watch=TRUE", .watch),
        ("/api/v1/pods?watch=tRUE", .regular),
        ("/api/v1/pods?watch=T", .watch),
        ("/api/v1/pods?watch", .regular),
        ("/api/v1/pods?xwatch=true&follow=1", .follow),
        ("/api/watch", .regular),
        ("/api/v1/watch", .watch),
        ("/apis/apps/v1/watch", .watch),
        ("/", .regular),
        ("", .regular),
        ("/version?watch=true", .watch),
    ])
    func classify(_ target: String, _ kind: RequestKind) {
        #expect(RequestKind.classify(target: target, isUpgrade: false) == kind)
    }

    @Test func upgradesAreUpgrades() {
        #expect(RequestKind.classify(target: "/api/v1/namespaces/d/pods/p/exec", isUpgrade: true) == .upgrade)
    }

    @Test func methodLabels() {
        #expect(MethodLabel.names[MethodLabel.index("PATCH")] == "PATCH")
        #expect(MethodLabel.names[MethodLabel.index("get")] == "OTHER")
        #expect(MethodLabel.names[MethodLabel.index("PROPFIND")] == "OTHER")
    }
}

@Suite struct ProcessMetricsTests {
    @Test func parsesProcStat() throws {
        // A command name with spaces and parentheses, as /proc allows.
        let stat = "4242 (proxy d (x)) S 1 4242 4242 0 -1 4194560 600 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 3000"
            + " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"
        let m = try #require(ProcessMetrics.parse(
            stat: Array(stat.utf8), bootStat: Array(boot.utf8), ticksPerSecond: 100, pageSize: 4096))
        #expect(m.cpuSeconds == 3)
        #expect(m.startTimeSeconds == 1_700_000_010)
        #expect(m.virtualBytes == 123_456_789)
        #expect(m.residentBytes == 3000 * 4096)
    }

    @Test func readsItsOwnProcess() throws {
        let m = try #require(ProcessMetrics.read())
        #expect(m.residentBytes > 0)
        #expect(m.openFDs > 2)
        #expect(m.maxFDs >= m.openFDs)
    }
}
