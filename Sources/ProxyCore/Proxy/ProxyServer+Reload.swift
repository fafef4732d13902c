import Dispatch
import FoundationEssentials
import Logging

/// What a reload did.
public enum ReloadOutcome: Sendable, Equatable {
    /// A new configuration version is in force for new requests.
    case applied
    /// The configuration is the same; credentials were re-checked (token file re-read, a failing plugin re-run).
    case unchanged
    /// The new configuration could not be loaded (the reason names the file and field); the old one stays.
    case failed(String)
    /// proxyd was not started from a kubeconfig or the in-cluster configuration it could load again.
    case notConfigured
    /// A graceful stop began.
    case stopping
}

/// Reloads: SIGHUP and kubeconfig file changes load the configuration again. A configuration that loads is a new
/// immutable `ConfigurationVersion`, swapped in atomically: each loop switches between two of its tasks, and every
/// request uses the version that was current when it started. Requests in flight, watches and upgrade tunnels
/// finish on the connections they have (the old version's pools drain: HTTP/2 connections get GOAWAY and close
/// after their last stream, idle HTTP/1.1 ones close at once, busy ones when their exchange ends). A configuration
/// that does not load is logged and changes nothing.
///
/// With several apiservers the new version has a new `APIServerSet`: the new primary and the same
/// `--failover-server`s (discovery starts over with the new credentials; the old version's watch stops), with
/// fresh health. Requests waiting in the old version for a reachable server get 503 at once.
extension ProxyServer {
    /// Loads the configuration again on `reloadQueue`; `completion` (if any) runs there with the outcome.
    public func reload(reason: String, completion: (@Sendable (ReloadOutcome) -> Void)? = nil) {
        reloadQueue.async {
            let outcome = self.performReload(reason: reason)
            completion?(outcome)
        }
    }

    private func performReload(reason: String) -> ReloadOutcome {
        let logger = shared.logger
        guard let source = configuration.upstreamSource else {
            logger.notice("\(reason): nothing to reload (the upstream was not loaded from a kubeconfig)")
            return .notConfigured
        }
        let (old, stopping) = state.withLock { ($0.version, $0.stopping) }
        guard !stopping else { return .stopping }
        let target: UpstreamTarget
        do {
            target = try source.load()
        } catch {
            return refused("\(error)", reason: reason)
        }
        if target == old.target {
            logger.info("\(reason): configuration unchanged")
            old.credentials.retryNow()
            counters.reloadFinished(succeeded: true, at: Date().timeIntervalSince1970)
            return .unchanged
        }
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let version: ConfigurationVersion
        do {
            version = try ConfigurationVersion(
                id: id, target: target, failover: configuration.failover, coordinator: orderedContexts[0].loop,
                apiPrefix: configuration.apiPrefix, appendServerPath: configuration.appendServerPath,
                staticFiles: shared.staticFiles, logger: logger, counters: counters)
        } catch {
            return refused("\(error)", reason: reason)
        }
        if let unavailable = version.credentials.current.unavailable {
            // The old credentials may still work; new ones that cannot be obtained are no improvement.
            version.stopWatching()
            return refused(unavailable, reason: reason)
        }
        let installed = state.withLock { s -> Bool in
            guard !s.stopping else { return false }
            s.version = version
            return true
        }
        guard installed else {
            version.stopWatching()
            return .stopping
        }
        // Every loop's servers for the new version are made here, in loop order (with several apiservers the
        // first loop's balancer coordinates), then installed by a task on each loop.
        for (index, context) in orderedContexts.enumerated() {
            let upstream = LoopUpstream(
                version: version,
                servers: version.makeLoopServers(
                    loop: context.loop, index: index, shared: shared, metrics: context.metrics))
            let box = LoopBound(upstream)
            context.loop.execute { context.install(box.value) }
        }
        startWatching(version)
        old.stopWatching()
        if readinessMonitor.withLock({ $0 != nil }) { probeUpstream() }
        counters.reloadFinished(succeeded: true, at: Date().timeIntervalSince1970)
        logger.notice(
            "\(reason): configuration reloaded; new requests go to \(target.serverURL), requests in flight finish on their connections")
        return .applied
    }

    private func refused(_ why: String, reason: String) -> ReloadOutcome {
        shared.logger.error("\(reason): cannot reload the configuration: \(why); the previous configuration stays in force")
        counters.reloadFinished(succeeded: false, at: Date().timeIntervalSince1970)
        return .failed(why)
    }

    /// Watches the kubeconfig files in use (see `ConfigurationWatcher`), if configured to.
    func startWatchingConfigurationFiles() {
        guard configuration.watchConfigurationFiles, let source = configuration.upstreamSource else { return }
        let new = ConfigurationWatcher(files: source.watchedFiles, queue: reloadQueue, logger: shared.logger) {
            [weak self] in
            self?.reload(reason: "kubeconfig changed")
        }
        watcher.withLock { $0 = new }
    }

    // MARK: readiness monitoring

    /// Keeps checking that the apiserver answers, for `/readyz`, without sending it requests: every
    /// `HealthPolicy.probeInterval`, the first loop's current pool PINGs an idle HTTP/2 connection or opens one
    /// (see `UpstreamPool.probe`); with several apiservers, each healthy server's pool does (`LoopBalancer.monitor`).
    /// Started when the health listener is enabled.
    public func startReadinessMonitor() {
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        let interval = HealthPolicy.probeInterval
        timer.schedule(deadline: .now(), repeating: .milliseconds(Int(interval.components.seconds) * 1000))
        timer.setEventHandler { [weak self] in self?.probeUpstream() }
        let box = RepeatingTimer(timer)
        let previous = readinessMonitor.withLock { m in
            defer { m = box }
            return m
        }
        previous?.source.cancel()
        timer.activate()
    }

    func probeUpstream() {
        guard let context = orderedContexts.first else { return }
        context.loop.execute { context.current.servers.probe(idle: HealthPolicy.probeInterval) }
    }

    /// Stops the file watcher and the readiness monitor (graceful stop).
    func stopBackgroundWork() {
        let oldWatcher = watcher.withLock { w in
            defer { w = nil }
            return w
        }
        oldWatcher?.stop()
        let monitor = readinessMonitor.withLock { m in
            defer { m = nil }
            return m
        }
        monitor?.source.cancel()
    }
}

/// A repeating Dispatch timer kept by a `Sendable` owner (Dispatch sources are thread-safe).
final class RepeatingTimer: @unchecked Sendable {
    let source: any DispatchSourceTimer
    init(_ source: any DispatchSourceTimer) { self.source = source }
}
