import Dispatch

/// One loop's side of the balancer: an `UpstreamPool` per apiserver, the choice of a server for each new stream,
/// requests waiting while no server is healthy, and resending what failed before it reached a server. Confined to
/// `loop`; health comes from the shared `APIServerSet` as snapshots.
///
/// Rules (docs/failover.md):
/// - A new request goes to the healthy server with the fewest open streams; ties go round-robin.
/// - A request that failed before any of it reached a server (`UpstreamFailurePoint.notSent`) is sent to another
///   server, whatever its method, up to `servers + 2` times.
/// - A GET or HEAD whose connection was lost before the response head is sent once more, to another server.
/// - A request body is kept for a resend up to `UpstreamStream.replayLimit` bytes; a larger one fails as before.
/// - With no healthy server, a new request waits up to `FailoverConfiguration.wait`, then gets 503.
/// - A started response (a watch, a log stream) is never moved: it ends when its server goes away.
final class LoopBalancer: UpstreamPoolObserver, UpstreamStreamRerouter {
    let loop: EventLoop
    /// This loop's position in the group (the coordinator is 0).
    let index: Int
    let servers: APIServerSet
    private let makePool: (APIServer) -> UpstreamPool
    /// The loop's counters: each slot counts into its server's `ServerCounters`.
    private let metrics: LoopMetrics

    final class Slot {
        let server: APIServer
        let pool: UpstreamPool
        var healthy: Bool
        /// This server's counters on this loop (`proxyd_apiserver_*`).
        let counters: ServerCounters

        init(server: APIServer, pool: UpstreamPool, healthy: Bool, counters: ServerCounters) {
            self.server = server
            self.pool = pool
            self.healthy = healthy
            self.counters = counters
        }
    }

    private(set) var slots: [Slot] = []
    private var version = -1
    private var cursor = 0
    /// Pools of servers that left the set, kept until their last connection closes (connections hold their
    /// pool unowned).
    private var leaving: [UpstreamPool] = []

    private enum Waiter {
        case stream(UpstreamStream)
        case tunnel((Result<APIServer, UpstreamFailure>) -> Void)
    }

    private var waiting: [(waiter: Waiter, deadline: UInt64)] = []
    private var waitTimer: LoopTimer?
    private var reportedWaiting = false
    private var shuttingDown = false
    /// The configuration version was replaced (`retire`): nothing waits for a server any more.
    private var retired = false

    /// - Parameter makePool: builds this loop's pool for a server (its observer is set here).
    init(
        loop: EventLoop, index: Int, servers: APIServerSet, metrics: LoopMetrics,
        makePool: @escaping (APIServer) -> UpstreamPool
    ) {
        self.loop = loop
        self.index = index
        self.servers = servers
        self.metrics = metrics
        self.makePool = makePool
        apply(servers.snapshot)
    }

    // MARK: requests

    /// Starts an exchange on the best server, or queues it until one is healthy.
    func start(_ request: UpstreamRequest, handler: any UpstreamResponseHandler) -> UpstreamStream {
        let stream = UpstreamStream(request: request, handler: handler)
        stream.rerouter = self
        stream.keepBodyForReplay()
        route(stream, avoiding: nil)
        return stream
    }

    private func route(_ stream: UpstreamStream, avoiding: Int?) {
        guard case .waiting = stream.state else { return }  // cancelled meanwhile
        if shuttingDown {
            Self.failUnsent(stream, .unavailable("proxyd is shutting down"))
            return
        }
        if let slot = choose(avoiding: avoiding) {
            stream.serverID = slot.server.id
            slot.counters.values.requests += 1
            slot.pool.enqueue(stream)
        } else if retired {
            Self.failUnsent(stream, .unavailable(servers.unreachableSummary()))
        } else {
            wait(.stream(stream))
        }
    }

    /// Fails a stream that is not at any server now (its last server's failure was counted when it came back).
    private static func failUnsent(_ stream: UpstreamStream, _ failure: UpstreamFailure) {
        stream.rerouter = nil
        stream.fail(failure, at: .final)
    }

    /// The healthy server with the fewest open streams (ties round-robin), preferring any but `avoiding`.
    private func choose(avoiding: Int?) -> Slot? {
        let slots = self.slots
        var chosen = ServerChooser.choose(count: slots.count, start: cursor) { index in
            slots[index].healthy && slots[index].server.id != avoiding ? slots[index].pool.openStreams : nil
        }
        if chosen == nil, avoiding != nil {
            chosen = ServerChooser.choose(count: slots.count, start: cursor) { index in
                slots[index].healthy ? slots[index].pool.openStreams : nil
            }
        }
        guard let chosen else { return nil }
        cursor = chosen + 1
        return slots[chosen]
    }

    func reroute(_ stream: UpstreamStream, after failure: UpstreamFailure, at point: UpstreamFailurePoint) -> Bool {
        slot(id: stream.serverID)?.counters.values.failures += 1
        guard !shuttingDown,
            ResendRule.allows(
                method: stream.request.method, point: point, replayable: stream.isReplayable, resends: stream.resends,
                resentAfterLoss: stream.resentAfterLoss, servers: slots.count)
        else { return false }
        if point == .lostBeforeResponse { stream.resentAfterLoss = true }
        stream.resends += 1
        let failed = stream.serverID
        stream.prepareForResend()
        servers.logger.info(
            "\(stream.request.method) \(stream.request.target): sending it to another apiserver (\(failure))")
        // On the next turn: the pool that failed it is still unwinding.
        let box = LoopBound(self)
        let streamBox = LoopBound(stream)
        loop.execute { box.value.route(streamBox.value, avoiding: failed) }
        return true
    }

    // MARK: waiting for a healthy server

    private func wait(_ waiter: Waiter) {
        let deadline = DispatchTime.now().uptimeNanoseconds + servers.configuration.wait.nanoseconds
        waiting.append((waiter, deadline))
        if waitTimer == nil { scheduleWaitTimer(at: deadline) }
        if !reportedWaiting {
            reportedWaiting = true
            servers.setWaiting(loop: index, true)
        }
    }

    private func scheduleWaitTimer(at deadline: UInt64) {
        waitTimer?.cancel()
        let now = DispatchTime.now().uptimeNanoseconds
        let box = WeakLoopBound(self)
        waitTimer = loop.scheduleTimer(after: .nanoseconds(Int64(clamping: deadline > now ? deadline - now : 0))) {
            guard let balancer = box.value else { return }
            balancer.waitTimer = nil
            balancer.expireWaiters()
        }
    }

    /// Gives up on the waiters whose deadline passed: 503, no apiserver is reachable.
    private func expireWaiters() {
        let now = DispatchTime.now().uptimeNanoseconds
        let expired = waiting.filter { $0.deadline <= now }
        waiting.removeAll { $0.deadline <= now }
        if !expired.isEmpty {
            fail(expired.map(\.waiter), .unavailable(servers.unreachableSummary()))
        }
        waitersChanged()
    }

    private func fail(_ waiters: [Waiter], _ failure: UpstreamFailure) {
        for waiter in waiters {
            switch waiter {
            case .stream(let stream):
                guard case .waiting = stream.state else { continue }
                Self.failUnsent(stream, failure)
            case .tunnel(let body):
                body(.failure(failure))
            }
        }
    }

    /// Hands waiters to healthy servers, oldest first.
    private func dispatchWaiters() {
        while !waiting.isEmpty, slots.contains(where: \.healthy) {
            let (waiter, _) = waiting.removeFirst()
            switch waiter {
            case .stream(let stream):
                route(stream, avoiding: nil)
            case .tunnel(let body):
                if let slot = choose(avoiding: nil) {
                    slot.counters.values.requests += 1
                    body(.success(slot.server))
                }
            }
        }
        waitersChanged()
    }

    private func waitersChanged() {
        if let next = waiting.map(\.deadline).min() {
            if waitTimer == nil { scheduleWaitTimer(at: next) }
        } else {
            waitTimer?.cancel()
            waitTimer = nil
            if reportedWaiting {
                reportedWaiting = false
                servers.setWaiting(loop: index, false)
            }
        }
    }

    // MARK: upgrade tunnels

    /// A server for an upgrade tunnel, preferring any but `avoiding`: now if one is healthy, else as soon as one is
    /// (up to the wait bound), else a 503 failure.
    func chooseTunnelServer(avoiding: Int?, _ body: @escaping (Result<APIServer, UpstreamFailure>) -> Void) {
        if shuttingDown {
            body(.failure(.unavailable("proxyd is shutting down")))
        } else if let slot = choose(avoiding: avoiding) {
            slot.counters.values.requests += 1
            body(.success(slot.server))
        } else if retired {
            body(.failure(.unavailable(servers.unreachableSummary())))
        } else {
            wait(.tunnel(body))
        }
    }

    /// How an upgrade tunnel's connection to a server went (tunnels have their own connections, outside the
    /// pools, but their outcome is evidence all the same).
    func tunnelConnection(to serverID: Int, failed failure: UpstreamFailure?) {
        guard let slot = slot(id: serverID) else { return }
        if let failure {
            slot.counters.values.failures += 1
            report(slot, .failed("cannot connect: \(failure)"))
        } else if !slot.healthy {
            report(slot, .connected)
        }
    }

    // MARK: health

    /// Applies a newer snapshot: new servers get a pool, servers that left have theirs drained, health flags
    /// follow, and waiters go to servers that became healthy.
    func apply(_ snapshot: ServerSnapshot) {
        guard snapshot.version > version else { return }
        version = snapshot.version
        var byID: [Int: Slot] = [:]
        for slot in slots { byID[slot.server.id] = slot }
        var updated: [Slot] = []
        for (server, healthy) in zip(snapshot.servers, snapshot.healthy) {
            if let slot = byID.removeValue(forKey: server.id) {
                slot.healthy = healthy
                updated.append(slot)
            } else {
                let pool = makePool(server)
                pool.observer = self
                let counters = metrics.counters(forServer: server.url)
                pool.serverCounters = counters
                updated.append(Slot(server: server, pool: pool, healthy: healthy, counters: counters))
            }
        }
        slots = updated
        leaving.removeAll { !$0.hasConnections }
        for slot in byID.values {
            slot.pool.shutdown()  // busy connections finish their streams; waiting streams come back here
            if slot.pool.hasConnections { leaving.append(slot.pool) }
        }
        if !waiting.isEmpty { dispatchWaiters() }
    }

    private func report(_ slot: Slot, _ evidence: HealthEvidence) {
        // A replaced configuration's connections only finish their work; the new server set judges for itself.
        guard !retired else { return }
        if let snapshot = servers.report(slot.server.id, evidence) { apply(snapshot) }
    }

    private func slot(for pool: UpstreamPool) -> Slot? {
        slots.first { $0.pool === pool }
    }

    private func slot(id: Int) -> Slot? {
        slots.first { $0.server.id == id }
    }

    func poolDidConnect(_ pool: UpstreamPool) {
        guard let slot = slot(for: pool), !slot.healthy else { return }  // healthy: nothing new, no lock
        report(slot, .connected)
    }

    func pool(_ pool: UpstreamPool, didFailToConnect failure: UpstreamFailure) {
        guard let slot = slot(for: pool) else { return }
        report(slot, .failed("cannot connect: \(failure)"))
    }

    func poolReceivedGoAway(_ pool: UpstreamPool, idle: Bool) {
        guard !idle, let slot = slot(for: pool) else { return }
        report(slot, .goingAway)
    }

    func pool(_ pool: UpstreamPool, missedPingOn connection: Int) {
        guard let slot = slot(for: pool) else { return }
        report(slot, .failed("a connection did not answer a PING"))
    }

    /// The coordinator's probe of an unhealthy server: a new connection, or with active checks `/readyz`.
    func probe(serverID: Int, readyz: Bool) {
        guard let slot = slot(id: serverID) else { return }
        if readyz {
            checkReadyz(serverID: serverID)
        } else {
            slot.pool.openProbeConnection()
        }
    }

    /// `GET /readyz` on a server (bypassing the choice: it asks this server), reporting the outcome.
    func checkReadyz(serverID: Int) {
        guard !shuttingDown, let slot = slot(id: serverID) else { return }
        let interval = servers.configuration.readyzInterval ?? .seconds(10)
        ReadyzCheck(balancer: self, slot: slot, timeout: min(max(interval, .seconds(1)), .seconds(10))).start()
    }

    func readyzFinished(_ slot: Slot, passed: Bool, detail: String) {
        report(slot, passed ? .ready : .failed("/readyz: \(detail)"))
    }

    // MARK: lifecycle

    /// The client certificate changed: every pool's connections drain and new ones use the new identity.
    func retireConnections() {
        for slot in slots { slot.pool.retireConnections() }
    }

    /// Graceful stop: waiters get 503, pools drain.
    func shutdown() {
        shuttingDown = true
        failAllWaiters(.unavailable("proxyd is shutting down"))
        for slot in slots { slot.pool.shutdown() }
    }

    private func failAllWaiters(_ failure: UpstreamFailure) {
        let waiters = waiting.map(\.waiter)
        waiting.removeAll()
        waitersChanged()
        fail(waiters, failure)
    }

    /// The configuration version was replaced (its `APIServerSet` stopped probing): requests waiting for a server
    /// get 503 now, every pool drains (`UpstreamPool.retire`: exchanges in flight, watches included, finish on
    /// their connections, which then close), and `onDrained` runs on the loop once all pools are empty.
    func retire(onDrained: @escaping () -> Void) {
        retired = true
        failAllWaiters(.unavailable(servers.unreachableSummary()))
        let pools = slots.map(\.pool) + leaving
        var remaining = pools.count
        if pools.isEmpty { onDrained() }
        for pool in pools {
            pool.retire {
                remaining -= 1
                if remaining == 0 { onDrained() }
            }
        }
    }

    // MARK: readiness and metrics

    /// The readiness monitor's turn (on the coordinator loop, every few seconds): each healthy server's pool PINGs
    /// an idle connection, or opens one (`UpstreamPool.probe`); a PING unanswered within `pingTimeout` closes that
    /// connection and makes the server unhealthy, as any missed PING does. Unhealthy servers are left to their
    /// probes (with their backoff).
    func monitor(idle: Duration, pingTimeout: Duration) {
        guard !shuttingDown, !retired else { return }
        for slot in slots where slot.healthy { slot.pool.probe(idle: idle, pingTimeout: pingTimeout) }
    }

    /// Adds every pool's connections to `counts`.
    func count(into counts: inout UpstreamConnectionCounts) {
        for slot in slots { _ = slot.pool.count(into: &counts) }
        for pool in leaving { _ = pool.count(into: &counts) }
    }

    /// The URLs of the servers this loop connected to at least once (this configuration version or an earlier one).
    var answeredServers: [String] {
        slots.filter(\.counters.answered).map(\.server.url)
    }
}

/// One `GET /readyz` of one server, bounded by a timeout; reports pass or fail to the balancer.
final class ReadyzCheck: UpstreamResponseHandler {
    private let balancer: LoopBalancer
    private let slot: LoopBalancer.Slot
    private let timeout: Duration
    private var stream: UpstreamStream?
    private var timer: LoopTimer?
    private var status: Int?
    private var done = false

    init(balancer: LoopBalancer, slot: LoopBalancer.Slot, timeout: Duration) {
        self.balancer = balancer
        self.slot = slot
        self.timeout = timeout
    }

    func start() {
        var headers = balancer.servers.requestHeaders()
        headers.replaceOrAdd(name: "Accept", value: "text/plain")
        let path = balancer.servers.primary.basePath + "/readyz"
        let request = UpstreamRequest(method: "GET", target: path, headers: headers, hasBody: false)
        // The check keeps itself alive through the timer and the stream's handler reference until it finishes.
        retainedUntilDone = self
        let box = LoopBound(self)
        timer = balancer.loop.scheduleTimer(after: timeout) {
            box.value.finish(passed: false, detail: "no answer within \(box.value.timeout)")
        }
        let started = slot.pool.start(request, handler: self)
        if !done { stream = started }
    }

    /// A strong self-reference while the check runs (until it ends the stream holds its handler too).
    private var retainedUntilDone: ReadyzCheck?

    private func finish(passed: Bool, detail: String) {
        guard !done else { return }
        done = true
        timer?.cancel()
        stream?.cancel()
        stream = nil
        balancer.readyzFinished(slot, passed: passed, detail: detail)
        retainedUntilDone = nil
    }

    func upstreamDidReceiveHead(status: Int, headers: HTTPHeaders) {
        self.status = status
        if status != 200 { finish(passed: false, detail: "status \(status)") }
    }

    func upstreamDidReceiveBody(_ bytes: ByteBuffer) {
        stream?.consumed(bytes.readableBytes)
    }

    func upstreamDidEnd() {
        finish(passed: status == 200, detail: "status \(status ?? 0)")
    }

    func upstreamDidFail(_ failure: UpstreamFailure) {
        finish(passed: false, detail: "\(failure)")
    }

    func upstreamRequestBodyDrained() {}
}

/// Whether a failed exchange may be sent again, to another apiserver (docs/failover.md, "What is retried").
enum ResendRule {
    /// - Parameters:
    ///   - replayable: the whole request is at hand (no body, or a body kept in full) and no response started.
    ///   - resends: how often it was sent again already.
    ///   - resentAfterLoss: the one resend after a lost connection was used.
    ///   - servers: how many servers there are.
    static func allows(
        method: String, point: UpstreamFailurePoint, replayable: Bool, resends: Int, resentAfterLoss: Bool, servers: Int
    ) -> Bool {
        guard replayable else { return false }
        switch point {
        case .final:
            return false
        case .notSent:
            // Whatever the method: nothing reached a server. Bounded, for servers that keep refusing streams.
            return resends < servers + 2
        case .lostBeforeResponse:
            // It may have been processed: only reads, and only once.
            return (method == "GET" || method == "HEAD") && !resentAfterLoss && resends < servers + 2
        }
    }
}
