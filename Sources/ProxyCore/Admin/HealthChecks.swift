/// The checks behind `/livez`, `/healthz` and `/readyz`, as pure functions of what a probe gathered
/// (`HealthFacts`), so they can be tested with any clock.
///
/// - `loops` (all three endpoints): every event loop ran a task queued by the probe within
///   `HealthPolicy.loopAnswerTimeout`.
/// - `upstream` (`/readyz`): the apiserver gave a sign of life within `HealthPolicy.upstreamStaleAfter` (a finished
///   handshake, any HTTP/2 frame such as the answer to the monitor's PING, an HTTP/1.1 response), and no connection
///   attempt failed since.
/// - `credentials` (`/readyz`): the credentials are not known to fail: none missing (exec plugin or token file
///   failing since start-up), no expired plugin credential that cannot be refreshed, and the last answer to a request
///   sent with the current credentials was not 401.
/// - `shutdown` (`/readyz`): no graceful stop has begun.
///
/// With several apiservers (`HealthFacts.servers`), `upstream` passes while at least one server is reachable: the
/// balancer holds it healthy (`ServerHealth`: no failed connection, missed PING or GOAWAY since it last answered)
/// and proxyd connected to it at least once. One informational check per server,
/// `upstream:<host:port>`, says how each one is; it fails the endpoint only when asked for alone
/// (`/readyz/upstream:<host:port>`).
enum HealthPolicy {
    /// How long a probe waits for each event loop.
    static let loopAnswerTimeout: Duration = .seconds(1)
    /// How often the readiness monitor checks on the apiserver (`UpstreamPool.probe`).
    static let probeInterval: Duration = .seconds(5)
    /// How old the last sign of life may be. With the monitor's PING every `probeInterval`, a healthy apiserver
    /// answers at least twice within it; a dead or silent one is reported within this bound.
    static let upstreamStaleAfter: Duration = .seconds(15)
    /// With several apiservers, how long the monitor's PING may go unanswered before the connection is dropped and
    /// the server unhealthy: with `probeInterval`, a server that stops answering is found within 15 s, the bound of
    /// one server.
    static let monitorPingTimeout: Duration = .seconds(5)

    static func livez(_ facts: HealthFacts) -> [HealthCheck] {
        [loops(facts)]
    }

    static func readyz(_ facts: HealthFacts) -> [HealthCheck] {
        guard let servers = facts.servers else {
            return [loops(facts), upstream(facts), credentials(facts), shutdown(facts)]
        }
        return [loops(facts), upstream(servers)] + servers.map(serverCheck) + [credentials(facts), shutdown(facts)]
    }

    /// Several apiservers: at least one is reachable.
    static func upstream(_ servers: [ServerFacts]) -> HealthCheck {
        if servers.contains(where: { $0.unreachableReason == nil }) { return HealthCheck(name: "upstream") }
        let reasons = servers.map { "\($0.url): \($0.unreachableReason ?? "")" }.joined(separator: "; ")
        return HealthCheck(name: "upstream", failure: "no apiserver is reachable (\(reasons))")
    }

    static func serverCheck(_ server: ServerFacts) -> HealthCheck {
        var check = HealthCheck(name: "upstream:\(server.authority)", failure: server.unreachableReason)
        check.informational = true
        return check
    }

    static func loops(_ facts: HealthFacts) -> HealthCheck {
        let missing = facts.loopCount - facts.loops.count
        guard missing > 0 else { return HealthCheck(name: "loops") }
        return HealthCheck(
            name: "loops",
            failure: "\(missing) of \(facts.loopCount) event loops did not answer within \(loopAnswerTimeout.components.seconds)s")
    }

    static func upstream(_ facts: HealthFacts) -> HealthCheck {
        var success: UInt64 = 0
        var failure: UInt64 = 0
        var reason = ""
        for loop in facts.loops {
            success = max(success, loop.lastUpstreamSuccess)
            if loop.lastUpstreamFailure > failure {
                failure = loop.lastUpstreamFailure
                reason = loop.lastUpstreamFailureReason
            }
        }
        if failure > success {
            return HealthCheck(name: "upstream", failure: "the last connection to the apiserver failed: \(reason)")
        }
        if success == 0 {
            return HealthCheck(name: "upstream", failure: "no connection to the apiserver yet")
        }
        let age = facts.now > success ? facts.now - success : 0
        if age > nanoseconds(upstreamStaleAfter) {
            return HealthCheck(
                name: "upstream", failure: "no answer from the apiserver for \(age / 1_000_000_000)s")
        }
        return HealthCheck(name: "upstream")
    }

    static func credentials(_ facts: HealthFacts) -> HealthCheck {
        if let failure = facts.credentialFailure {
            return HealthCheck(name: "credentials", failure: failure)
        }
        var rejected: UInt64 = 0
        var accepted: UInt64 = 0
        for loop in facts.loops where loop.authRevision == facts.credentialRevision {
            rejected = max(rejected, loop.lastAuthRejected)
            accepted = max(accepted, loop.lastAuthAccepted)
        }
        if rejected > accepted {
            return HealthCheck(
                name: "credentials",
                failure: "the apiserver answered 401 Unauthorized to the last request sent with the configured credentials")
        }
        return HealthCheck(name: "credentials")
    }

    static func shutdown(_ facts: HealthFacts) -> HealthCheck {
        facts.stopping ? HealthCheck(name: "shutdown", failure: "proxyd is shutting down") : HealthCheck(name: "shutdown")
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000)
    }
}

/// What a health probe gathered.
struct HealthFacts: Sendable {
    /// Uptime nanoseconds when the facts were gathered.
    var now: UInt64
    var loopCount: Int
    /// The health of each loop that answered in time.
    var loops: [LoopHealth]
    /// `CredentialStore.failure` of the configuration in force.
    var credentialFailure: String?
    /// The revision of the credential in force (answers about older ones do not count).
    var credentialRevision: UInt64
    var stopping: Bool
    /// Several apiservers: each server of the configuration in force, in the balancer's order; nil with one.
    var servers: [ServerFacts]? = nil
}

/// One apiserver as `/readyz` sees it (several apiservers).
struct ServerFacts: Sendable, Equatable {
    var url: String
    /// host:port, the name of its check.
    var authority: String
    /// The balancer's verdict (`APIServerSet`), and why not when not.
    var healthy: Bool
    var reason: String?
    /// A loop's pool set up a connection to it at least once (`ServerCounters.answered`).
    var answered: Bool

    /// Why it cannot take requests now, nil when it can.
    var unreachableReason: String? {
        if !healthy { return reason ?? "unhealthy" }
        return answered ? nil : "no connection yet"
    }
}

struct HealthCheck: Sendable, Equatable {
    var name: String
    /// Why the check fails; nil when it passes.
    var failure: String?
    /// Listed, but its failure fails the endpoint only when it is the one check asked for (`/readyz/<name>`).
    var informational = false

    init(name: String, failure: String? = nil) {
        self.name = name
        self.failure = failure
    }
}

/// The answer to a health endpoint, in the apiserver's format: `ok`, or with `?verbose` one `[+]name ok` /
/// `[-]name failed: reason` line per check and `<endpoint> check passed|failed`. A failure without `verbose` is one
/// line naming the failed checks and why (the apiserver withholds the reasons; proxyd's contain no secret).
/// `?exclude=name` (repeatable) leaves a check out; `/<endpoint>/<name>` runs one check.
enum HealthResponse {
    /// - Parameters:
    ///   - endpoint: `livez`, `healthz` or `readyz`.
    ///   - only: the check of `/<endpoint>/<name>`, if any.
    /// - Returns: the status (200; 503 for a failed `readyz`, 500 for a failed `livez`/`healthz`, as the
    ///   apiserver; 404 for an unknown check) and the body.
    static func render(
        endpoint: String, checks: [HealthCheck], only: String?, verbose: Bool, excluded: Set<String>
    ) -> (status: Int, body: String) {
        var selected = checks.filter { !excluded.contains($0.name) }
        if let only {
            guard let check = checks.first(where: { $0.name == only }) else {
                return (404, "404 page not found\n")
            }
            selected = [check]
        }
        let failed = selected.filter { $0.failure != nil && (!$0.informational || only != nil) }
        let failureStatus = endpoint == "readyz" ? 503 : 500
        let status = failed.isEmpty ? 200 : failureStatus
        if verbose {
            var body = ""
            for check in selected {
                if let failure = check.failure {
                    body += "[-]\(check.name) failed: \(failure)\n"
                } else {
                    body += "[+]\(check.name) ok\n"
                }
            }
            for name in excluded.sorted() where checks.contains(where: { $0.name == name }) {
                body += "[+]\(name) excluded: ok\n"
            }
            body += "\(endpoint) check \(failed.isEmpty ? "passed" : "failed")\n"
            return (status, body)
        }
        if failed.isEmpty { return (200, "ok") }
        let reasons = failed.map { "\($0.name) failed: \($0.failure ?? "")" }.joined(separator: "; ")
        return (status, reasons + "\n")
    }
}
