/// Everything one scrape of `/metrics` shows, and its rendering in the Prometheus text format. Every family is
/// listed in docs/metrics.md; the names follow Prometheus practice: the `proxyd_` prefix, base units (seconds,
/// bytes), `_total` for counters.
struct MetricsReport: Sendable {
    /// The event loops' counters, summed.
    var loops: MetricsSnapshot
    var service: ServiceCounters.Values
    var process: ProcessMetrics?
    var build: BuildInfo
    /// Several apiservers: the servers of the configuration in force, in order, with the balancer's verdict
    /// (empty with one server: the `proxyd_apiserver_*` families are then left out).
    var apiservers: [(url: String, healthy: Bool)] = []

    struct BuildInfo: Sendable {
        var version: String
        var openSSL: String
        var nghttp2: String

        static var current: BuildInfo {
            BuildInfo(version: ProxyVersion.version, openSSL: TLSLibrary.version, nghttp2: HTTP2Library.version)
        }
    }

    func render() -> [UInt8] {
        var out = PrometheusText()
        renderRequests(into: &out)
        renderClients(into: &out)
        renderUpstream(into: &out)
        renderServers(into: &out)
        renderService(into: &out)
        renderProcess(into: &out)
        return out.bytes
    }

    private func renderRequests(into out: inout PrometheusText) {
        let l = loops
        out.family("proxyd_build_info", .gauge, help: "Always 1; the labels say which proxyd and libraries run.")
        out.sample(
            "proxyd_build_info", ["version": build.version, "openssl": build.openSSL, "nghttp2": build.nghttp2], 1)

        out.family(
            "proxyd_http_requests_total", .counter,
            help: "Requests answered, by method and status code sent to the client (0: the client left first).")
        for key in l.requests.keys.sorted() {
            let method = MethodLabel.names[key / 1000]
            out.sample("proxyd_http_requests_total", ["method": method, "code": String(key % 1000)], l.requests[key]!)
        }

        out.family(
            "proxyd_http_request_duration_seconds", .histogram,
            help: "Time from a request's head to the end of its response, for requests that are not watches, "
                + "followed logs or upgrades.")
        for method in l.durations.keys.sorted() {
            let histogram = l.durations[method]!
            out.histogram(
                "proxyd_http_request_duration_seconds", labels: [("method", MethodLabel.names[method])],
                bounds: LatencyBuckets.bounds, counts: histogram.counts, sum: Double(histogram.sumNanos) / 1e9)
        }

        out.single(
            "proxyd_http_requests_in_flight", .gauge, help: "Requests being answered, long-running ones included.",
            l.requestsInFlight)

        out.family(
            "proxyd_http_malformed_requests_total", .counter,
            help: "Requests refused before routing because they broke HTTP/1.1 (or timed out), by status code.")
        for code in l.malformedRequests.keys.sorted() {
            out.sample("proxyd_http_malformed_requests_total", ["code": String(code)], l.malformedRequests[code]!)
        }

        out.single(
            "proxyd_http_request_body_bytes_total", .counter, help: "Request body bytes received from clients.",
            l.requestBodyBytes)
        out.single(
            "proxyd_http_response_body_bytes_total", .counter, help: "Response body bytes sent to clients.",
            l.responseBodyBytes)

        out.single("proxyd_watches", .gauge, help: "Watch requests streaming now.", l.watches)
        out.single(
            "proxyd_upgrade_tunnels", .gauge,
            help: "Upgraded connections (exec, attach, port-forward, WebSocket) tunnelling now.",
            l.upgradeTunnels)
        out.family("proxyd_upgrade_tunnel_bytes_total", .counter, help: "Bytes relayed through upgrade tunnels.")
        out.sample("proxyd_upgrade_tunnel_bytes_total", ["direction": "to_upstream"], l.tunnelBytesToUpstream)
        out.sample("proxyd_upgrade_tunnel_bytes_total", ["direction": "to_client"], l.tunnelBytesToClient)

        out.family(
            "proxyd_filter_rejections_total", .counter,
            help: "Requests refused with 403 by a request filter (--accept-hosts, --accept-paths/--reject-paths, "
                + "--reject-methods, the cross-origin guard).")
        for rule in FilterRule.allCases {
            out.sample("proxyd_filter_rejections_total", ["filter": rule.rawValue], l.filterRejections[rule.metricIndex])
        }
    }

    private func renderClients(into out: inout PrometheusText) {
        out.single("proxyd_client_connections", .gauge, help: "Open client connections.", loops.clientConnections)
        out.single(
            "proxyd_client_connections_accepted_total", .counter, help: "Client connections accepted.",
            loops.clientConnectionsAccepted)
    }

    private func renderUpstream(into out: inout PrometheusText) {
        let c = loops.upstreamConnections
        out.family(
            "proxyd_upstream_connections", .gauge,
            help: "Pooled connections to the apiserver by protocol and state (upgrade tunnels not included).")
        for (p, name) in UpstreamConnectionCounts.protocols.enumerated() {
            for state in UpstreamConnectionCounts.State.allCases {
                out.sample(
                    "proxyd_upstream_connections", ["protocol": name, "state": state.label],
                    c.counts[p][state.rawValue])
            }
        }
        out.single(
            "proxyd_upstream_connections_connecting", .gauge,
            help: "Pooled connections to the apiserver in TCP, proxy or TLS setup.",
            c.connecting)
        out.family(
            "proxyd_upstream_connections_opened_total", .counter,
            help: "Pooled connections to the apiserver set up, by the protocol ALPN chose.")
        for (p, name) in UpstreamConnectionCounts.protocols.enumerated() {
            out.sample(
                "proxyd_upstream_connections_opened_total", ["protocol": name], loops.upstreamConnectionsOpened[p])
        }
        out.family(
            "proxyd_upstream_connection_errors_total", .counter,
            help: "Connections to the apiserver (pooled and upgrade) that failed, by what failed.")
        for kind in UpstreamErrorKind.allCases {
            out.sample(
                "proxyd_upstream_connection_errors_total", ["kind": kind.label], loops.upstreamErrors[kind.rawValue])
        }
        out.single("proxyd_upstream_streams", .gauge, help: "HTTP/2 streams open to the apiserver.", c.streams)
    }

    /// Several apiservers: per server (label `server`, its URL) requests, failures, connection errors and health.
    /// Servers that left the set (discovery) keep their counters.
    private func renderServers(into out: inout PrometheusText) {
        let counters = loops.servers
        guard !apiservers.isEmpty || !counters.isEmpty else { return }
        var urls = apiservers.map(\.url)
        urls += counters.keys.filter { !urls.contains($0) }.sorted()
        out.family(
            "proxyd_apiserver_healthy", .gauge,
            help: "1 while the balancer sends new requests to this apiserver, 0 while it is unhealthy.")
        for server in apiservers {
            out.sample("proxyd_apiserver_healthy", ["server": server.url], server.healthy ? 1 : 0)
        }
        out.family(
            "proxyd_apiserver_requests_total", .counter,
            help: "Requests and upgrade tunnels sent to this apiserver; a request sent again counts at each server.")
        for url in urls {
            out.sample("proxyd_apiserver_requests_total", ["server": url], counters[url]?.requests ?? 0)
        }
        out.family(
            "proxyd_apiserver_request_failures_total", .counter,
            help: "Requests and upgrade tunnels that failed at this apiserver (then sent to another one or not).")
        for url in urls {
            out.sample("proxyd_apiserver_request_failures_total", ["server": url], counters[url]?.failures ?? 0)
        }
        out.family(
            "proxyd_apiserver_connection_errors_total", .counter,
            help: "Pooled connections to this apiserver that failed, by what failed.")
        for url in urls {
            let errors = counters[url]?.connectionErrors
            for kind in UpstreamErrorKind.allCases {
                out.sample(
                    "proxyd_apiserver_connection_errors_total", ["server": url, "kind": kind.label],
                    errors?[kind.rawValue] ?? 0)
            }
        }
    }

    private func renderService(into out: inout PrometheusText) {
        out.family(
            "proxyd_credential_refreshes_total", .counter,
            help: "Credentials obtained anew (token file re-read with a new token, client certificate files "
                + "rotated, exec plugin run), by source and result.")
        for source in CredentialSourceLabel.allCases {
            let counts = service.credentialRefreshes[source.rawValue]
            out.sample("proxyd_credential_refreshes_total", ["source": source.label, "result": "success"], counts[0])
            out.sample("proxyd_credential_refreshes_total", ["source": source.label, "result": "failure"], counts[1])
        }
        out.family(
            "proxyd_config_reloads_total", .counter,
            help: "Configuration reloads (SIGHUP or a kubeconfig change) by result; a failed one leaves the old "
                + "configuration in force.")
        out.sample("proxyd_config_reloads_total", ["result": "success"], service.reloadsSucceeded)
        out.sample("proxyd_config_reloads_total", ["result": "failure"], service.reloadsFailed)
        out.single(
            "proxyd_config_last_reload_successful", .gauge,
            help: "1 if the last reload attempt succeeded (or none was made), 0 if it failed.",
            service.lastReloadSuccessful ? 1 : 0)
        out.single(
            "proxyd_config_last_load_timestamp_seconds", .gauge,
            help: "When the configuration in force was loaded, in seconds since 1970.",
            service.lastSuccessfulLoad)
    }

    private func renderProcess(into out: inout PrometheusText) {
        guard let process else { return }
        out.single(
            "process_cpu_seconds_total", .counter, help: "Total user and system CPU time spent in seconds.",
            process.cpuSeconds)
        out.single(
            "process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.",
            process.residentBytes)
        out.single(
            "process_virtual_memory_bytes", .gauge, help: "Virtual memory size in bytes.",
            process.virtualBytes)
        out.single("process_open_fds", .gauge, help: "Number of open file descriptors.", process.openFDs)
        out.single("process_max_fds", .gauge, help: "Maximum number of open file descriptors.", process.maxFDs)
        out.single(
            "process_start_time_seconds", .gauge, help: "Start time of the process since unix epoch in seconds.",
            process.startTimeSeconds)
    }
}
