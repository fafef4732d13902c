import Foundation
import Synchronization
import Testing

/// Issue 12 part 5: an HTTP/1.1 apiserver killed with SIGKILL under load must not stall proxyd.
///
/// The cause (fixed in `UpstreamPool.dispatchWaiting`): with HTTP/1.1 every waiting request counts on a connection
/// of its own. When a connect failed while others were still in progress, the pool opened a replacement for the
/// requests still waiting, at once and with no backoff; each replacement failed and was replaced in turn, so the
/// waiting requests were never failed (hundreds of thousands of refused connects in seconds) until the clients gave
/// up. Now a request gets one connection attempt, and during the backoff uncovered requests fail immediately.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct UpstreamDeathTests {
    /// One request's fate.
    struct Sample: Sendable {
        var client: Int
        var sent: ContinuousClock.Instant
        var answered: ContinuousClock.Instant?
        var status: Int?
    }

    @Test func test_issue_12_http1UpstreamKilledUnderLoadAnswersEveryClientAtOnce() async throws {
        let dir = try TempDirectory.make()
        defer { try? FileManager.default.removeItem(at: dir) }
        let standIn = try ChildProcess(
            executable: BuildProducts.standIn, arguments: ["--no-http2", "--port", "0", "--state-dir", dir.path])
        _ = try await standIn.waitForStdout(containing: "serving on")
        let proxy = try await RunningProxy.start(arguments: [
            "--kubeconfig", dir.appendingPathComponent("kubeconfig").path, "--port=0",
        ])
        defer { proxy.child.kill9() }

        let clients = 32
        let stop = Atomic<Bool>(false)
        let samples = Mutex<[Sample]>([])
        let port = proxy.port
        let threads = (0..<clients).map { index in
            Thread {
                let client = KeepAliveClient(port: port)
                while !stop.load(ordering: .relaxed) {
                    let sent = ContinuousClock.now
                    let response = client.get("/api/v1/namespaces/default/configmaps")
                    let sample = Sample(client: index, sent: sent, answered: response == nil ? nil : .now, status: response?.status)
                    samples.withLock { $0.append(sample) }
                    if response == nil { break }  // a hang (10 s timeout) or a failed connection: recorded
                }
                client.close()
            }
        }
        threads.forEach { $0.start() }
        // Load with a live upstream first: every client has a kept-alive connection and the pool is full.
        try await Task.sleep(for: .seconds(1))
        let before = samples.withLock { $0.filter { $0.status == 200 }.count }
        #expect(before >= clients, "the clients were not all served before the kill (\(before) answers)")

        standIn.kill9()
        let killed = ContinuousClock.now
        _ = try await standIn.waitForExit()
        try await Task.sleep(for: .seconds(2))

        // A brand-new connection after the kill.
        let fresh = KeepAliveClient(port: port)
        let freshSent = ContinuousClock.now
        let freshResponse = fresh.get("/api/v1/namespaces")
        let freshTime = ContinuousClock.now - freshSent
        fresh.close()

        stop.store(true, ordering: .relaxed)
        while threads.contains(where: { !$0.isFinished }) { try await Task.sleep(for: .milliseconds(20)) }

        let after = samples.withLock { $0.filter { $0.sent >= killed } }
        let straddling = samples.withLock { $0.filter { $0.sent < killed && ($0.answered.map { $0 >= killed } ?? true) } }
        #expect(freshResponse.map { [502, 503].contains($0.status) } == true, "new request: \(String(describing: freshResponse?.status))")
        #expect(freshTime < .seconds(1), "the new request took \(freshTime)")
        // Every client went on getting answers after the kill, and every answer was a prompt 502/503.
        let unanswered = (after + straddling).filter { $0.answered == nil }
        #expect(unanswered.isEmpty, "\(unanswered.count) requests got no answer (clients \(Set(unanswered.map(\.client)).sorted()))")
        let answeringClients = Set(after.filter { $0.answered != nil }.map(\.client))
        #expect(answeringClients.count == clients, "only \(answeringClients.count) of \(clients) clients were answered after the kill")
        let slow = after.compactMap { sample in sample.answered.map { $0 - sample.sent } }.filter { $0 >= .seconds(1) }
        #expect(slow.isEmpty, "\(slow.count) of \(after.count) requests after the kill took a second or more (max \(slow.max() ?? .zero))")
        let statuses = Set(after.compactMap(\.status))
        #expect(statuses.isSubset(of: [502, 503]), "statuses after the kill: \(statuses.sorted())")
        // Refused connects are logged once (per loop and per 10 s), not once per attempt.
        let connectLines = proxy.child.stderr.components(separatedBy: "cannot connect to the apiserver").count - 1
        #expect(connectLines <= 4, "\(connectLines) 'cannot connect' lines")
        #expect(proxy.child.process.isRunning)
        await proxy.stop()
    }
}
