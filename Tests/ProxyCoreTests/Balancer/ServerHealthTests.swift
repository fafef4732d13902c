import Testing

@testable import ProxyCore

/// The health state machine and its backoff, driven by a fake clock (plain nanosecond values) and fixed jitter.
@Suite struct ServerHealthTests {
    static let ms: UInt64 = 1_000_000
    static let backoff = HealthBackoff(initial: .milliseconds(250), maximum: .seconds(10), whileWaiting: .seconds(1))

    @Test func backoffDoublesFromInitialUpToTheMaximumWithEqualJitter() {
        let b = Self.backoff
        // jitter 1: the full step; jitter 0: half of it.
        #expect(b.delay(failures: 1, jitter: 1, waiting: false) == 250 * Self.ms)
        #expect(b.delay(failures: 1, jitter: 0, waiting: false) == 125 * Self.ms)
        #expect(b.delay(failures: 2, jitter: 1, waiting: false) == 500 * Self.ms)
        #expect(b.delay(failures: 3, jitter: 1, waiting: false) == 1_000 * Self.ms)
        #expect(b.delay(failures: 6, jitter: 1, waiting: false) == 8_000 * Self.ms)
        #expect(b.delay(failures: 7, jitter: 1, waiting: false) == 10_000 * Self.ms)
        #expect(b.delay(failures: 1_000, jitter: 1, waiting: false) == 10_000 * Self.ms)
        #expect(b.delay(failures: 1_000, jitter: 0, waiting: false) == 5_000 * Self.ms)
        // Requests waiting: capped at whileWaiting.
        #expect(b.delay(failures: 1_000, jitter: 1, waiting: true) == 1_000 * Self.ms)
        #expect(b.delay(failures: 1, jitter: 1, waiting: true) == 250 * Self.ms)
    }

    @Test func jitterStaysWithinTheUpperHalfOfEveryStep() {
        var random = SplitMix64(seed: 10)
        for failures in 1...12 {
            let full = Self.backoff.delay(failures: failures, jitter: 1, waiting: false)
            for _ in 0..<50 {
                let jitter = Double(random.next() % 10_001) / 10_000
                let delay = Self.backoff.delay(failures: failures, jitter: jitter, waiting: false)
                #expect(delay >= full / 2 && delay <= full)
            }
        }
    }

    @Test func aFailureMakesAHealthyServerUnhealthyUntilItConnectsAgain() {
        var h = ServerHealth()
        #expect(h.isHealthy)
        #expect(h.nextProbe(Self.backoff, waiting: false) == nil)
        let changed1 = h.record(.failed("connection refused"), now: 1_000 * Self.ms, jitter: 1, activeChecks: false)
        #expect(changed1)
        #expect(h.status == .unhealthy)
        #expect(h.reason == "connection refused")
        #expect(h.nextProbe(Self.backoff, waiting: false) == 1_250 * Self.ms)
        // Not due yet.
        let due1 = h.startProbeIfDue(Self.backoff, waiting: false, now: 1_249 * Self.ms)
        #expect(!due1)
        let due2 = h.startProbeIfDue(Self.backoff, waiting: false, now: 1_250 * Self.ms)
        #expect(due2)
        #expect(h.status == .probing)
        let changed2 = h.record(.connected, now: 1_300 * Self.ms, jitter: 1, activeChecks: false)
        #expect(changed2)
        #expect(h.isHealthy)
        #expect(h.failures == 0)
        #expect(h.reason == nil)
    }

    @Test func failedProbesStepUpTheBackoff() {
        var h = ServerHealth()
        var now: UInt64 = 0
        _ = h.record(.failed("refused"), now: now, jitter: 1, activeChecks: false)
        var expected: [UInt64] = []
        var seen: [UInt64] = []
        for step in 1...8 {
            let due = h.nextProbe(Self.backoff, waiting: false)!
            seen.append(due - now)
            expected.append(Self.backoff.delay(failures: step, jitter: 1, waiting: false))
            now = due
            let due3 = h.startProbeIfDue(Self.backoff, waiting: false, now: now)
            #expect(due3)
            // A failed probe is not a change of health (it stays out), but it counts.
            let changed3 = h.record(.failed("refused"), now: now, jitter: 1, activeChecks: false)
            #expect(!changed3)
            #expect(h.failures == step + 1)
        }
        #expect(seen == expected)
        #expect(seen.last == 10_000 * Self.ms)
    }

    @Test func moreFailuresWhileUnhealthyDoNotCountTwice() {
        // Several loops or connections see the same outage: one step, not one per report.
        var h = ServerHealth()
        _ = h.record(.failed("refused"), now: 0, jitter: 1, activeChecks: false)
        for t in 1...5 {
            let changed4 = h.record(.failed("refused again"), now: UInt64(t) * Self.ms, jitter: 0, activeChecks: false)
            #expect(!changed4)
        }
        #expect(h.failures == 1)
        #expect(h.nextProbe(Self.backoff, waiting: false) == 250 * Self.ms)
        #expect(h.reason == "refused again")
    }

    @Test func waitingRequestsBringProbesForward() {
        var h = ServerHealth()
        var now: UInt64 = 0
        _ = h.record(.failed("refused"), now: now, jitter: 1, activeChecks: false)
        for _ in 0..<10 {
            now = h.nextProbe(Self.backoff, waiting: false)!
            _ = h.startProbeIfDue(Self.backoff, waiting: false, now: now)
            _ = h.record(.failed("refused"), now: now, jitter: 1, activeChecks: false)
        }
        #expect(h.nextProbe(Self.backoff, waiting: false)! - now == 10_000 * Self.ms)
        #expect(h.nextProbe(Self.backoff, waiting: true)! - now == 1_000 * Self.ms)
    }

    @Test func aProbeThatNeverReportsIsDueAgain() {
        var h = ServerHealth()
        _ = h.record(.failed("refused"), now: 0, jitter: 1, activeChecks: false)
        let due4 = h.startProbeIfDue(Self.backoff, waiting: false, now: 300 * Self.ms)
        #expect(due4)
        let due5 = h.startProbeIfDue(Self.backoff, waiting: false, now: 30_000 * Self.ms)
        #expect(!due5)
        #expect(h.nextProbe(Self.backoff, waiting: false) == 300 * Self.ms + ServerHealth.probeTimeout)
        let due6 = h.startProbeIfDue(Self.backoff, waiting: false, now: 300 * Self.ms + ServerHealth.probeTimeout)
        #expect(due6)
    }

    @Test func withActiveChecksOnlyReadyzBringsAServerBack() {
        var h = ServerHealth()
        let changed5 = h.record(.failed("/readyz: status 500"), now: 0, jitter: 1, activeChecks: true)
        #expect(changed5)
        let due7 = h.startProbeIfDue(Self.backoff, waiting: false, now: 250 * Self.ms)
        #expect(due7)
        // The probe's connection came up: not enough.
        let changed6 = h.record(.connected, now: 260 * Self.ms, jitter: 1, activeChecks: true)
        #expect(!changed6)
        #expect(h.status == .probing)
        let changed7 = h.record(.ready, now: 270 * Self.ms, jitter: 1, activeChecks: true)
        #expect(changed7)
        #expect(h.isHealthy)
        // Passive mode: a connection is enough.
        var passive = ServerHealth()
        let wentAway = passive.record(.goingAway, now: 0, jitter: 1, activeChecks: false)
        #expect(wentAway && passive.status == .unhealthy && passive.reason == "it sent GOAWAY")
        let changed8 = passive.record(.connected, now: 1, jitter: 1, activeChecks: false)
        #expect(changed8)
    }

    @Test func successWhileHealthyIsNoChange() {
        var h = ServerHealth()
        let changed9 = h.record(.connected, now: 0, jitter: 1, activeChecks: false)
        #expect(!changed9)
        let changed10 = h.record(.ready, now: 0, jitter: 1, activeChecks: true)
        #expect(!changed10)
        #expect(h.isHealthy)
    }
}

/// Least open streams among eligible servers, ties round-robin.
@Suite struct ServerChooserTests {
    @Test func leastOpenStreamsWins() {
        #expect(ServerChooser.choose(loads: [3, 1, 2], start: 0) == 1)
        #expect(ServerChooser.choose(loads: [3, 1, 2], start: 2) == 1)
        #expect(ServerChooser.choose(loads: [0, 5], start: 1) == 0)
    }

    @Test func unhealthyServersAreNeverChosen() {
        #expect(ServerChooser.choose(loads: [nil, 7, nil], start: 0) == 1)
        #expect(ServerChooser.choose(loads: [nil, nil], start: 0) == nil)
        #expect(ServerChooser.choose(loads: [], start: 0) == nil)
    }

    @Test func tiesGoRoundRobin() {
        // An idle proxy: every server at 0 streams; advancing the start after each pick visits them in turn.
        var cursor = 0
        var picks: [Int] = []
        for _ in 0..<6 {
            let chosen = ServerChooser.choose(loads: [0, 0, 0], start: cursor)!
            picks.append(chosen)
            cursor = chosen + 1
        }
        #expect(picks == [0, 1, 2, 0, 1, 2])
        // Ties among the least loaded only, skipping the busier one.
        #expect(ServerChooser.choose(loads: [1, 4, 1], start: 1) == 2)
        #expect(ServerChooser.choose(loads: [1, 4, 1], start: 3) == 0)
        #expect(ServerChooser.choose(loads: [1, 4, 1], start: -1) == 2)
    }

    @Test func loadSpreadsOverServersAsStreamsOpen() {
        // Streams that stay open (watches) fill the servers evenly.
        var loads = [0, 0, 0]
        var cursor = 0
        for _ in 0..<9 {
            let chosen = ServerChooser.choose(loads: loads.map { Optional($0) }, start: cursor)!
            loads[chosen] += 1
            cursor = chosen + 1
        }
        #expect(loads == [3, 3, 3])
    }
}

/// What is sent again, and what is not (docs/failover.md).
@Suite struct ResendRuleTests {
    @Test(arguments: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    func notSentGoesElsewhereWhateverTheMethod(method: String) {
        #expect(ResendRule.allows(method: method, point: .notSent, replayable: true, resends: 0, resentAfterLoss: false, servers: 3))
        #expect(ResendRule.allows(method: method, point: .notSent, replayable: true, resends: 4, resentAfterLoss: true, servers: 3))
        // Bounded.
        #expect(!ResendRule.allows(method: method, point: .notSent, replayable: true, resends: 5, resentAfterLoss: false, servers: 3))
        // A body that was not kept in full cannot be sent again.
        #expect(!ResendRule.allows(method: method, point: .notSent, replayable: false, resends: 0, resentAfterLoss: false, servers: 3))
    }

    @Test func aLostConnectionResendsOnlyReadsAndOnlyOnce() {
        for method in ["GET", "HEAD"] {
            #expect(ResendRule.allows(method: method, point: .lostBeforeResponse, replayable: true, resends: 0, resentAfterLoss: false, servers: 2))
            #expect(!ResendRule.allows(method: method, point: .lostBeforeResponse, replayable: true, resends: 1, resentAfterLoss: true, servers: 2))
        }
        for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            #expect(!ResendRule.allows(method: method, point: .lostBeforeResponse, replayable: true, resends: 0, resentAfterLoss: false, servers: 2))
        }
    }

    @Test func startedResponsesAndFinalFailuresAreNeverResent() {
        #expect(!ResendRule.allows(method: "GET", point: .final, replayable: true, resends: 0, resentAfterLoss: false, servers: 3))
        #expect(!ResendRule.allows(method: "GET", point: .lostBeforeResponse, replayable: false, resends: 0, resentAfterLoss: false, servers: 3))
    }
}
