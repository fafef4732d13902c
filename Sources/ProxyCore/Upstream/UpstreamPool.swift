import Dispatch
import Logging

/// The upstream connections of one event loop, shared by every client connection on that loop.
///
/// - HTTP/2 (ALPN `h2`): requests share a connection up to the server's `MAX_CONCURRENT_STREAMS` (a real apiserver
///   allows about 250); another connection opens only when all are full, several at once when many requests wait
///   (thousands of watches), and each new stream goes to the least busy connection, so streams spread out. A connection that got GOAWAY finishes its streams and takes no new
///   ones.
/// - HTTP/1.1 (ALPN `http/1.1`, or `http://` servers): an idle keep-alive connection per exchange, new ones as
///   needed (one per client connection at most, so `--max-connections` bounds them, as Go's transport does not
///   cap them either: a cap would queue requests behind watches that last for hours).
/// - While the apiserver cannot be reached, requests fail fast with 503 during a short, growing backoff
///   (100 ms doubling to 2 s), then the next request tries again. Each waiting request gets at most one
///   connection attempt: when one fails, a request it was opened for fails with it instead of opening another
///   (issue 12: with an HTTP/1.1 upstream killed under load, every failed connect used to open a replacement for
///   the still-waiting requests, a connect storm that answered nobody until the clients gave up).
///
/// With several apiservers there is one pool per server per loop, under a `LoopBalancer` (its `observer`): the pool
/// reports connection outcomes to it and leaves backoff to it, and failed streams go back to it (see
/// `UpstreamStream.fail(_:at:)`).
final class UpstreamPool: UpstreamTransportDelegate {
    static let idleTimeout: Duration = .seconds(90)  // client-go's IdleConnTimeout
    static let initialBackoff: UInt64 = 100_000_000
    static let maxBackoff: UInt64 = 2_000_000_000
    /// At most this many HTTP/2 connections are set up at the same time.
    static let maxParallelHTTP2Setups = 8

    let loop: EventLoop
    let target: UpstreamTarget
    let healthCheck: HTTP2HealthCheck
    private let tlsContextProvider: @Sendable () -> TLSContext?
    private let proxy: UpstreamProxy?
    private let logger: Logger

    private var nextID = 0
    /// Connections whose TCP/TLS setup is in progress.
    private var connecting: [ObjectIdentifier: UpstreamTransport] = [:]
    private var http2: [HTTP2UpstreamConnection] = []
    private var http1: [HTTP1UpstreamConnection] = []
    private var idleHTTP1: [HTTP1UpstreamConnection] = []
    private var byTransport: [ObjectIdentifier: AnyObject] = [:]
    private var waiting: [UpstreamStream] = []
    /// Learned from the first handshake: whether the server speaks h2, and how many streams it allows.
    private var serverSpeaksHTTP2: Bool?
    /// Streams one HTTP/2 connection took last time the server said (its MAX_CONCURRENT_STREAMS).
    private var streamsPerConnection = 100
    private var learnedStreamsPerConnection = false
    /// What a new HTTP/2 connection may carry before its server's SETTINGS arrive.
    var streamsBeforeSettings: Int { learnedStreamsPerConnection ? streamsPerConnection : 1 }
    private var failures = 0
    private var unavailableUntil: UInt64 = 0
    private var lastFailure: UpstreamFailure?
    /// When the last "cannot connect" line was logged (at most one per 10 s while connects keep failing).
    private var connectFailureLoggedAt: UInt64 = 0
    private var unloggedConnectFailures = 0
    private var idleTimer: LoopTimer?
    private var shuttingDown = false
    /// Connections set up, or HTTP/1.1 connections busy, when the TLS identity changed: they carry no new request.
    private var retired: Set<ObjectIdentifier> = []
    /// The balancer above this pool (several apiservers); nil with one server.
    weak var observer: (any UpstreamPoolObserver)?
    /// `:authority` / `Host` sent: the cluster server's, also when this pool dials another apiserver of it.
    let requestAuthority: String
    /// The loop's counters (shared by the loop's pools of every configuration version).
    private let metrics: LoopMetrics
    /// Whether successes and failures here count for `/readyz` (not once the pool's configuration was replaced).
    private var recordsHealth = true
    /// Readiness monitoring is on: one connection stays open while idle, so PINGs can show the apiserver answers.
    private var keepWarm = false
    /// The pool's configuration was replaced: connections close once they carry nothing (`retire`).
    private var retiring = false
    private var onDrained: (() -> Void)?
    /// When the server last answered here: a finished handshake or an HTTP/1.1 response (uptime nanoseconds, 0 for
    /// never). HTTP/2 frames are read from the connections when asked (`count(into:)`).
    private(set) var lastAnswer: UInt64 = 0
    /// Several apiservers: this server's counters on this loop (connection errors are counted here).
    var serverCounters: ServerCounters?

    init(
        loop: EventLoop, target: UpstreamTarget, proxy: UpstreamProxy? = nil, logger: Logger,
        healthCheck: HTTP2HealthCheck = HTTP2HealthCheck(), metrics: LoopMetrics = LoopMetrics(),
        requestAuthority: String? = nil,
        tlsContextProvider: @escaping @Sendable () -> TLSContext?
    ) {
        self.loop = loop
        self.target = target
        self.requestAuthority = requestAuthority ?? target.authority
        self.healthCheck = healthCheck
        self.logger = logger
        self.metrics = metrics
        self.tlsContextProvider = tlsContextProvider
        self.proxy = proxy
    }

    /// Starts an exchange; events reach `handler` on this loop.
    func start(_ request: UpstreamRequest, handler: any UpstreamResponseHandler) -> UpstreamStream {
        let stream = UpstreamStream(request: request, handler: handler)
        let now = DispatchTime.now().uptimeNanoseconds
        if now < unavailableUntil, let lastFailure, connecting.isEmpty, http2.isEmpty, idleHTTP1.isEmpty,
            observer == nil  // with a balancer, backoff is its business
        {
            stream.state = .finished
            let box = LoopBound(stream)
            loop.execute {
                box.value.deliverFailure(lastFailure)
            }
            return stream
        }
        enqueue(stream)
        return stream
    }

    /// Takes a `waiting` stream (new, or sent again by the balancer) to a connection.
    func enqueue(_ stream: UpstreamStream) {
        waiting.append(stream)
        dispatchWaiting()
    }

    /// Streams waiting for, or carried by, this pool's connections: the balancer's measure of load.
    var openStreams: Int {
        var count = waiting.count + http1.count - idleHTTP1.count
        for connection in http2 { count += connection.streamCount }
        return count
    }

    /// Whether any connection is open or being set up.
    var hasConnections: Bool { !connecting.isEmpty || !http2.isEmpty || !http1.isEmpty }

    /// Opens a connection to learn whether the server answers (the balancer's probe); the outcome reaches the
    /// observer. Nothing happens while one is being set up already: its outcome answers the same question.
    func openProbeConnection() {
        guard connecting.isEmpty else { return }
        openConnection()
    }

    /// Assigns waiting streams to connections, opening connections as needed. While connecting is backing off
    /// after a failure, streams that no connection in progress covers fail at once with that failure.
    private func dispatchWaiting() {
        var failed: [UpstreamStream] = []
        defer {
            // Reported from the loop, as `start` does: a handler may start another exchange on this pool, and
            // `start` itself may be what called dispatchWaiting.
            if let failure = lastFailure {
                for stream in failed {
                    stream.state = .finished
                    let box = LoopBound(stream)
                    loop.execute { box.value.fail(failure, at: .notSent) }
                }
            }
        }
        while !waiting.isEmpty {
            let stream = waiting[0]
            if case .finished = stream.state {
                waiting.removeFirst()
                continue
            }
            if let h2 = leastBusyHTTP2Connection() {
                waiting.removeFirst()
                _ = h2.attach(stream)
                continue
            }
            if let h1 = idleHTTP1.popLast() {
                waiting.removeFirst()
                h1.attach(stream)
                continue
            }
            // Nothing free: does a connection being set up already cover the queue? For HTTP/2 (or while the
            // protocol is unknown) one connection at a time is set up: its SETTINGS tell how many streams it
            // takes, and only the overflow opens another.
            let covered: Int
            if serverSpeaksHTTP2 == false {
                covered = connecting.count
            } else if serverSpeaksHTTP2 == nil {
                covered = connecting.isEmpty ? 0 : Int.max
            } else {
                // Each connection being set up will take about as many streams as the last one did.
                covered = connecting.count >= Self.maxParallelHTTP2Setups
                    ? Int.max : connecting.count * streamsPerConnection
            }
            let waitingCount = waiting.count(where: { if case .waiting = $0.state { return true } else { return false } })
            if waitingCount > covered {
                if lastFailure != nil, DispatchTime.now().uptimeNanoseconds < unavailableUntil, observer == nil {
                    // Backing off: the newest uncovered streams fail now rather than wait for a connection that
                    // nobody is opening (or open one per failure, in a storm).
                    failed += takeNewestWaiting(waitingCount - covered)
                    continue
                }
                openConnection()
                continue
            }
            return
        }
    }

    /// The connection with the fewest streams among those that may open one now.
    private func leastBusyHTTP2Connection() -> HTTP2UpstreamConnection? {
        var best: HTTP2UpstreamConnection?
        for h2 in http2 where h2.canOpenStream {
            if best == nil || h2.streamCount < best!.streamCount { best = h2 }
        }
        return best
    }

    /// Removes up to `count` of the most recently queued waiting streams.
    private func takeNewestWaiting(_ count: Int) -> [UpstreamStream] {
        var taken: [UpstreamStream] = []
        var index = waiting.count - 1
        while taken.count < count && index >= 0 {
            if case .waiting = waiting[index].state {
                taken.append(waiting.remove(at: index))
            }
            index -= 1
        }
        return taken.reversed()
    }

    private func openConnection() {
        guard !shuttingDown else { return }
        let tls: TLSContext?
        if target.scheme == "https" {
            guard let ctx = tlsContextProvider() else {
                failWaiting(.badGateway("no TLS configuration for \(target.authority)"))
                return
            }
            tls = ctx
        } else {
            tls = nil
        }
        let transport = UpstreamTransport(loop: loop, target: target, tlsContext: tls, proxy: proxy)
        transport.delegate = self
        connecting[ObjectIdentifier(transport)] = transport
        transport.connect()
    }

    private func failWaiting(_ failure: UpstreamFailure) {
        let streams = waiting
        waiting.removeAll()
        for stream in streams {
            if case .finished = stream.state { continue }
            stream.fail(failure, at: .notSent)
        }
    }

    // MARK: UpstreamTransportDelegate

    func transportDidConnect(_ transport: UpstreamTransport, alpn: String?) {
        let key = ObjectIdentifier(transport)
        connecting.removeValue(forKey: key)
        if retired.remove(key) != nil {
            // Set up with the previous identity: close it; the waiting streams get a connection with the new one.
            transport.close()
            dispatchWaiting()
            return
        }
        if failures > 0 {
            logger.notice("connected to the apiserver \(target.authority) again after \(failures) failed attempt(s)")
        }
        failures = 0
        unavailableUntil = 0
        lastFailure = nil
        unloggedConnectFailures = 0
        nextID += 1
        metrics.values.upstreamConnectionsOpened[alpn == "h2" ? 0 : 1] += 1
        lastAnswer = DispatchTime.now().uptimeNanoseconds
        if recordsHealth { metrics.health.recordUpstreamSuccess(now: lastAnswer) }
        serverCounters?.answered = true
        if alpn == "h2" {
            serverSpeaksHTTP2 = true
            do {
                let connection = try HTTP2UpstreamConnection(id: nextID, transport: transport, pool: self)
                http2.append(connection)
                byTransport[key] = connection
                logger.debug("upstream HTTP/2 connection \(nextID) to \(target.authority) ready")
            } catch {
                transport.fail(.badGateway("cannot start HTTP/2 session: \(error)"))
                return
            }
        } else {
            serverSpeaksHTTP2 = false
            let connection = HTTP1UpstreamConnection(id: nextID, transport: transport, pool: self)
            http1.append(connection)
            byTransport[key] = connection
            idleHTTP1.append(connection)
            logger.debug("upstream HTTP/1.1 connection \(nextID) to \(target.authority) ready")
        }
        observer?.poolDidConnect(self)
        dispatchWaiting()
        if retiring {
            drainRetiredConnections()
        } else {
            scheduleIdleCheck()
        }
    }

    func transport(_ transport: UpstreamTransport, didRead plaintext: ByteBuffer) {
        switch byTransport[ObjectIdentifier(transport)] {
        case let h2 as HTTP2UpstreamConnection: h2.didRead(plaintext)
        case let h1 as HTTP1UpstreamConnection: h1.didRead(plaintext)
        default: break
        }
    }

    func transportDidDrainWrites(_ transport: UpstreamTransport) {
        switch byTransport[ObjectIdentifier(transport)] {
        case let h2 as HTTP2UpstreamConnection: h2.didDrainWrites()
        case let h1 as HTTP1UpstreamConnection: h1.didDrainWrites()
        default: break
        }
    }

    func transportDidClose(_ transport: UpstreamTransport, failure: UpstreamFailure?) {
        defer { checkDrained() }
        let key = ObjectIdentifier(transport)
        if let failure {
            let kind = (transport.failureKind ?? .protocol).rawValue
            metrics.values.upstreamErrors[kind] += 1
            serverCounters?.values.connectionErrors[kind] += 1
            if recordsHealth {
                metrics.health.recordUpstreamFailure(failure.description, now: DispatchTime.now().uptimeNanoseconds)
            }
        }
        if connecting.removeValue(forKey: key) != nil {
            retired.remove(key)
            // Setup failed.
            let failure = failure ?? .unavailable("connection to \(target.authority) closed during setup")
            failures += 1
            let backoff = min(Self.initialBackoff << UInt64(min(failures - 1, 10)), Self.maxBackoff)
            let now = DispatchTime.now().uptimeNanoseconds
            unavailableUntil = now + backoff
            lastFailure = failure
            unloggedConnectFailures += 1
            if failures == 1 || now - connectFailureLoggedAt >= 10_000_000_000 {
                let more = unloggedConnectFailures > 1 ? " (\(unloggedConnectFailures) failed attempts)" : ""
                logger.warning("cannot connect to the apiserver \(target.authority): \(failure)\(more)")
                connectFailureLoggedAt = now
                unloggedConnectFailures = 0
            }
            observer?.pool(self, didFailToConnect: failure)
            // With a balancer, the waiting streams go back to it (this server is now unhealthy).
            if observer != nil || (connecting.isEmpty && http2.isEmpty && http1.isEmpty) {
                failWaiting(failure)
            } else {
                dispatchWaiting()
            }
            return
        }
        switch byTransport.removeValue(forKey: key) {
        case let h2 as HTTP2UpstreamConnection:
            http2.removeAll { $0 === h2 }
            if let failure { logger.info("upstream HTTP/2 connection \(h2.id) closed: \(failure)") }
            h2.didClose(failure: failure)
        case let h1 as HTTP1UpstreamConnection:
            http1.removeAll { $0 === h1 }
            idleHTTP1.removeAll { $0 === h1 }
            retired.remove(ObjectIdentifier(h1))
            h1.didClose(failure: failure)
        default:
            break
        }
        dispatchWaiting()
    }

    // MARK: events from connections

    func streamFinished(on connection: HTTP2UpstreamConnection) {
        dispatchWaiting()
    }

    func capacityChanged(_ connection: HTTP2UpstreamConnection) {
        streamsPerConnection = max(1, connection.session.remoteMaxConcurrentStreams)
        learnedStreamsPerConnection = true
        dispatchWaiting()
    }

    /// An HTTP/1.1 connection received a response head: the apiserver answers (for `/readyz`).
    func http1ResponseReceived() {
        lastAnswer = DispatchTime.now().uptimeNanoseconds
        if recordsHealth { metrics.health.recordUpstreamSuccess(now: lastAnswer) }
    }

    func http1ConnectionIsIdle(_ connection: HTTP1UpstreamConnection) {
        guard !connection.isClosed else { return }
        if shuttingDown || retiring || retired.contains(ObjectIdentifier(connection)) {
            connection.close()
            return
        }
        idleHTTP1.append(connection)
        dispatchWaiting()
    }

    /// GOAWAY received: streams the server never processed are retried on another connection when they carry no
    /// body (safe to replay); the others fail with 503.
    func connectionIsGoingAway(_ connection: HTTP2UpstreamConnection, refused: [UpstreamStream]) {
        logger.info("upstream HTTP/2 connection \(connection.id) got GOAWAY; new requests use a new connection")
        if let observer {
            // Several apiservers: the refused streams never reached this one; the balancer sends them elsewhere.
            // A GOAWAY on a connection with nothing in flight is a server closing an idle connection: no news.
            observer.poolReceivedGoAway(self, idle: connection.streamCount == 0 && refused.isEmpty)
            for stream in refused {
                stream.fail(.unavailable("the apiserver refused the stream (GOAWAY)"), at: .notSent)
            }
            dispatchWaiting()
            return
        }
        for stream in refused {
            if !stream.request.hasBody {
                stream.state = .waiting
                waiting.append(stream)
            } else {
                stream.state = .finished
                stream.deliverFailure(.unavailable("the apiserver refused the stream (GOAWAY)"))
            }
        }
        dispatchWaiting()
    }

    /// A connection's PING went unanswered; it is being closed.
    func connectionMissedPing(_ connection: HTTP2UpstreamConnection) {
        observer?.pool(self, missedPingOn: connection.id)
    }

    // MARK: idle connections

    private func scheduleIdleCheck() {
        guard idleTimer == nil else { return }
        let box = WeakLoopBound(self)
        idleTimer = loop.scheduleTimer(after: .seconds(10)) {
            guard let pool = box.value else { return }
            pool.idleTimer = nil
            pool.closeIdleConnections()
        }
    }

    private func closeIdleConnections() {
        let now = DispatchTime.now().uptimeNanoseconds
        let limit = UInt64(Self.idleTimeout.components.seconds) * 1_000_000_000
        let warm = keepWarm ? http2.first { !$0.isDraining } : nil
        for h2 in http2 where h2.streamCount == 0 && now - h2.lastActivity.uptimeNanoseconds > limit && h2 !== warm {
            h2.goAway()
            h2.close()
        }
        for h1 in idleHTTP1 where now - h1.lastActivity.uptimeNanoseconds > limit {
            h1.close()
        }
        if !http2.isEmpty || !http1.isEmpty { scheduleIdleCheck() }
    }

    /// The TLS identity changed (rotated client certificate): connections made with the old one take no new
    /// requests; HTTP/2 ones send GOAWAY and close after their last stream, HTTP/1.1 ones close when idle, and ones
    /// still being set up are dropped once ready. New requests open connections with the new identity.
    func retireConnections() {
        for h2 in http2 {
            h2.goAway()
            if h2.streamCount == 0 { h2.close() }
        }
        for h1 in idleHTTP1 { h1.close() }
        idleHTTP1.removeAll()
        for h1 in http1 where !h1.isClosed { retired.insert(ObjectIdentifier(h1)) }
        for key in connecting.keys { retired.insert(key) }
        dispatchWaiting()
    }

    /// Graceful stop: no new connections; idle ones close now, busy ones after their exchanges.
    func shutdown() {
        shuttingDown = true
        keepWarm = false
        failWaiting(.unavailable("proxyd is shutting down"))
        for h2 in http2 {
            h2.goAway()
            if h2.streamCount == 0 { h2.close() }
        }
        for h1 in idleHTTP1 { h1.close() }
        idleTimer?.cancel()
        idleTimer = nil
    }

    // MARK: configuration reloads

    /// The pool's configuration version was replaced: new requests go to another pool. Exchanges in flight here
    /// (watches included) run to their end on their connections, which then close; requests that captured this
    /// version but have not started yet still get a connection, closed after them. `onDrained` runs (on the loop)
    /// once nothing is left.
    func retire(onDrained: @escaping () -> Void) {
        retiring = true
        recordsHealth = false
        keepWarm = false
        self.onDrained = onDrained
        idleTimer?.cancel()
        idleTimer = nil
        drainRetiredConnections()
        checkDrained()
    }

    private func drainRetiredConnections() {
        for h2 in http2 {
            h2.goAway()
            if h2.streamCount == 0 { h2.close() }
        }
        for h1 in idleHTTP1 { h1.close() }
        idleHTTP1.removeAll()
    }

    private func checkDrained() {
        guard retiring, onDrained != nil, connecting.isEmpty, http2.isEmpty, http1.isEmpty, waiting.isEmpty else {
            return
        }
        let done = onDrained
        onDrained = nil
        let box = LoopBound(DrainedCallback(done))
        loop.execute { box.value.run?() }
    }

    // MARK: readiness

    /// Readiness monitoring (`--healthz-bind-address`): shows whether the apiserver answers without sending it a
    /// request. An HTTP/2 connection that was silent for `idle` gets a PING (its answer, like any frame, is a sign
    /// of life; none within `pingTimeout`, by default `HTTP2_PING_TIMEOUT_SECONDS`, closes the connection); with
    /// none open, one is opened and kept open while idle. HTTP/1.1 has no PING: after `idle` without an answer, a
    /// new connection's handshake is the check.
    func probe(idle: Duration, pingTimeout: Duration? = nil) {
        guard !shuttingDown, !retiring else { return }
        keepWarm = true
        let now = DispatchTime.now().uptimeNanoseconds
        let threshold = UInt64(idle.components.seconds) * 1_000_000_000
        if let h2 = http2.first(where: { !$0.isDraining && !$0.isClosed }) {
            if now - h2.lastRead.uptimeNanoseconds >= threshold { h2.probe(timeout: pingTimeout) }
            return
        }
        guard connecting.isEmpty else { return }
        if serverSpeaksHTTP2 == false {
            if now - lastAnswer < threshold { return }
            for h1 in idleHTTP1 { h1.close() }
            idleHTTP1.removeAll()
        }
        openConnection()
        scheduleIdleCheck()
    }

    /// Adds this pool's connections to `counts` (by protocol and state) and returns when the apiserver last sent
    /// an HTTP/2 frame here (uptime nanoseconds, 0 for never or when the pool does not count for readiness).
    func count(into counts: inout UpstreamConnectionCounts) -> UInt64 {
        typealias State = UpstreamConnectionCounts.State
        var newestFrame: UInt64 = 0
        for h2 in http2 where !h2.isClosed {
            let state: State = retiring || h2.isDraining ? .draining : h2.streamCount > 0 ? .active : .idle
            counts.counts[0][state.rawValue] += 1
            counts.streams += h2.streamCount
            if recordsHealth { newestFrame = max(newestFrame, h2.lastRead.uptimeNanoseconds) }
        }
        for h1 in http1 where !h1.isClosed {
            let state: State
            if retiring || retired.contains(ObjectIdentifier(h1)) {
                state = .draining
            } else {
                state = idleHTTP1.contains { $0 === h1 } ? .idle : .active
            }
            counts.counts[1][state.rawValue] += 1
        }
        counts.connecting += connecting.count
        return newestFrame
    }

    /// Whether nothing is left in the pool (no connection, none being set up, no request waiting).
    var isEmpty: Bool { connecting.isEmpty && http2.isEmpty && http1.isEmpty && waiting.isEmpty }
}

/// Lets the drained callback (a non-`Sendable` closure confined to the loop) ride a `loop.execute`.
private final class DrainedCallback {
    let run: (() -> Void)?
    init(_ run: (() -> Void)?) { self.run = run }
}

/// Hears how a pool's connections fare (the balancer, which keeps the servers' health).
protocol UpstreamPoolObserver: AnyObject {
    func poolDidConnect(_ pool: UpstreamPool)
    func pool(_ pool: UpstreamPool, didFailToConnect failure: UpstreamFailure)
    func poolReceivedGoAway(_ pool: UpstreamPool, idle: Bool)
    func pool(_ pool: UpstreamPool, missedPingOn connection: Int)
}
