import Synchronization

/// Counters of what proxyd does besides proxying: credential refreshes and configuration reloads. They change a few
/// times a minute at most, off the event loops (token-file polls, plugin runs, certificate checks, reloads), so one
/// lock is fine here; the per-request counters are `LoopMetrics`.
public final class ServiceCounters: Sendable {
    struct Values: Sendable, Equatable {
        /// `[source][0 success, 1 failure]`.
        var credentialRefreshes = [[Int]](repeating: [0, 0], count: CredentialSourceLabel.allCases.count)
        var reloadsSucceeded = 0
        var reloadsFailed = 0
        /// Whether the last reload attempt was applied (or found nothing to change); true before any.
        var lastReloadSuccessful = true
        /// Wall-clock time of the last successful load (start-up or reload), seconds since 1970.
        var lastSuccessfulLoad: Double = 0
    }

    private let state = Mutex(Values())

    public init() {}

    var values: Values { state.withLock { $0 } }

    func credentialRefreshed(_ source: CredentialSourceLabel, succeeded: Bool) {
        state.withLock { $0.credentialRefreshes[source.rawValue][succeeded ? 0 : 1] += 1 }
    }

    /// The configuration in force was loaded at `seconds` (wall clock, seconds since 1970).
    func configurationLoaded(at seconds: Double) {
        state.withLock { $0.lastSuccessfulLoad = seconds }
    }

    /// A reload attempt ended: applied (or nothing to change) or refused, the old configuration staying in force.
    func reloadFinished(succeeded: Bool, at seconds: Double) {
        state.withLock { values in
            values.lastReloadSuccessful = succeeded
            if succeeded {
                values.reloadsSucceeded += 1
                values.lastSuccessfulLoad = seconds
            } else {
                values.reloadsFailed += 1
            }
        }
    }
}
