import Dispatch
import Synchronization

/// What the admin listener asks the proxy: metrics and health, gathered by a task on every event loop (the only
/// way to read loop-confined counters without locks on the data path), with a deadline so a stuck loop cannot
/// stall a probe.
extension ProxyServer {
    /// Asks every loop for its report. `completion` runs once, on a Dispatch queue, with one entry per loop in loop
    /// order: nil for a loop that did not answer within `timeout`.
    func collectReports(timeout: Duration, completion: @escaping @Sendable ([LoopReport?]) -> Void) {
        let contexts = orderedContexts
        let results = Mutex([LoopReport?](repeating: nil, count: contexts.count))
        let finished = Mutex(false)
        let finish: @Sendable () -> Void = {
            let first = finished.withLock { f in
                defer { f = true }
                return !f
            }
            if first { completion(results.withLock { $0 }) }
        }
        let group = DispatchGroup()
        for (index, context) in contexts.enumerated() {
            group.enter()
            context.loop.execute {
                let report = context.report()
                results.withLock { $0[index] = report }
                group.leave()
            }
        }
        group.notify(queue: .global(), execute: finish)
        let millis = Int(timeout.components.seconds) * 1000 + Int(timeout.components.attoseconds / 1_000_000_000_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(millis), execute: finish)
    }

    /// The Prometheus text of a scrape, or why there is none (an event loop did not answer in time: a partial sum
    /// would make counters go backwards).
    public func scrapeMetrics(completion: @escaping @Sendable (_ text: [UInt8]?, _ failure: String?) -> Void) {
        let counters = self.counters
        let apiservers = currentVersion.apiservers
        collectReports(timeout: .seconds(2)) { reports in
            var sum = MetricsSnapshot()
            for (index, report) in reports.enumerated() {
                guard let report else {
                    completion(nil, "event loop \(index) did not answer within 2s")
                    return
                }
                sum.add(report.metrics)
            }
            let health = apiservers?.healthReport().map { (url: $0.server.url, healthy: $0.healthy) } ?? []
            let report = MetricsReport(
                loops: sum, service: counters.values, process: ProcessMetrics.read(), build: .current,
                apiservers: health)
            completion(report.render(), nil)
        }
    }

    /// Answers a health endpoint (`livez`, `healthz`, `readyz`); see `HealthPolicy` and `HealthResponse`.
    public func checkHealth(
        endpoint: String, only: String?, verbose: Bool, excluded: Set<String>,
        completion: @escaping @Sendable (_ status: Int, _ body: String) -> Void
    ) {
        let (version, stopping) = state.withLock { ($0.version, $0.stopping) }
        let loopCount = orderedContexts.count
        collectReports(timeout: HealthPolicy.loopAnswerTimeout) { reports in
            let credentials = version.credentials
            let loops = reports.compactMap { $0?.health }
            var facts = HealthFacts(
                now: DispatchTime.now().uptimeNanoseconds, loopCount: loopCount,
                loops: loops, credentialFailure: credentials.failure,
                credentialRevision: credentials.current.revision, stopping: stopping)
            if let apiservers = version.apiservers {
                let answered = Set(loops.flatMap(\.answeredServers))
                facts.servers = apiservers.healthReport().map { entry in
                    ServerFacts(
                        url: entry.server.url, authority: entry.server.target.authority, healthy: entry.healthy,
                        reason: entry.reason, answered: answered.contains(entry.server.url))
                }
            }
            let checks = endpoint == "readyz" ? HealthPolicy.readyz(facts) : HealthPolicy.livez(facts)
            let answer = HealthResponse.render(
                endpoint: endpoint, checks: checks, only: only, verbose: verbose, excluded: excluded)
            completion(answer.status, answer.body)
        }
    }
}
