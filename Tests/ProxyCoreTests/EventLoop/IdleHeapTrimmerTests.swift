import Synchronization
import Testing
@testable import ProxyCore

extension EventLoopSuites {
@Suite("EventLoop IdleHeapTrimmer")
struct IdleHeapTrimmerTests {
    @Test func checksPeriodicallyUntilStopped() async throws {
        #expect(IdleHeapTrimmer.isAvailable, "glibc's malloc_trim was not found")
        let checks = Atomic<Int>(0)
        let trimmer = IdleHeapTrimmer(interval: .milliseconds(50)) {
            checks.add(1, ordering: .relaxed)
            return true
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while checks.load(ordering: .relaxed) < 3 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(checks.load(ordering: .relaxed) >= 3)
        trimmer.stop()
        try await Task.sleep(for: .milliseconds(100))
        let after = checks.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(200))
        #expect(checks.load(ordering: .relaxed) == after)
    }
}
}
