import Dispatch

/// An HTTP/2 connection to the apiserver carrying many `UpstreamStream`s. Confined to its pool's loop.
///
/// Data path: transport plaintext → `HTTP2Session.feed` → delegate events → stream handlers (the client side).
/// Output: `HTTP2Session.takeOutput` → transport, but only while the socket's write queue is under
/// `writeHighWater`, so request bodies wait inside nghttp2 (and then in the stream queues, which pause the client)
/// instead of piling up in memory.
final class HTTP2UpstreamConnection: HTTP2SessionDelegate {
    static let writeHighWater = 256 * 1024
    /// Connection receive window: the sum of all streams' windows may not exceed it.
    static let connectionWindow: Int32 = 64 << 20

    let id: Int
    let transport: UpstreamTransport
    private(set) var session: HTTP2Session!
    private unowned let pool: UpstreamPool
    private var streams = StreamTable<UpstreamStream>()
    private var inFeed = false
    private var inFlush = false
    private var flushScheduled = false
    private var flushPending = false
    private(set) var isClosed = false
    private(set) var lastActivity = DispatchTime.now()
    /// When the apiserver last sent anything on this connection (a PING answer included): `/readyz` reads it.
    private(set) var lastRead = DispatchTime.now()
    private var healthTimer: LoopTimer?
    private var pingOutstanding = false
    private var pingSentAt: UInt64 = 0
    /// How long the outstanding PING may go unanswered.
    private var pingLimit: Duration = .zero

    init(id: Int, transport: UpstreamTransport, pool: UpstreamPool) throws(HTTP2Error) {
        self.id = id
        self.transport = transport
        self.pool = pool
        session = try HTTP2Session(delegate: self, streamWindow: StreamWindow.initial,
                                   connectionWindow: Self.connectionWindow)
        flush()
        if let readIdle = pool.healthCheck.readIdle { scheduleHealthCheck(after: readIdle) }
    }

    var streamCount: Int { streams.count }

    /// Whether another stream may be opened now (not going away, under the server's MAX_CONCURRENT_STREAMS).
    /// Before the server's SETTINGS arrive its limit is unknown: the connection takes as many streams as the pool
    /// learned from earlier connections (one on the first), so streams never pile up inside nghttp2 beyond the limit
    /// of a server that allows fewer than nghttp2's default assumption of 100.
    var canOpenStream: Bool {
        guard !isClosed, session.canOpenStream else { return false }
        let limit = session.remoteSettingsReceived ? session.remoteMaxConcurrentStreams : pool.streamsBeforeSettings
        return streams.count < limit
    }


    /// Opens an h2 stream for `stream` and hands over any body queued while it waited.
    func attach(_ stream: UpstreamStream) -> Bool {
        let request = stream.request
        let pending = stream.takePendingBody()
        let hasBody = request.hasBody
        let id: Int32
        do {
            id = try session.submitRequest(
                method: request.method, scheme: pool.target.scheme, authority: pool.requestAuthority,
                path: request.target, headers: request.headers, hasBody: hasBody)
        } catch {
            stream.fail(.badGateway("cannot open HTTP/2 stream: \(error)"), at: .notSent)
            return false
        }
        streams[id] = stream
        stream.state = .http2(self, id)
        stream.receiveWindow = StreamWindow()
        lastActivity = .now()
        if hasBody {
            for chunk in pending.chunks { session.appendBody(chunk, stream: id) }
            if pending.ended { session.endBody(stream: id) }
        }
        scheduleFlush()
        stream.checkBodyDrained()
        return true
    }

    func sendBody(_ bytes: [UInt8], stream id: Int32) {
        session.appendBody(bytes, stream: id)
        scheduleFlush()
    }

    func endBody(stream id: Int32) {
        session.endBody(stream: id)
        scheduleFlush()
    }

    func bufferedBodyBytes(stream id: Int32) -> Int { session.bufferedBodyBytes(stream: id) }

    func consume(stream id: Int32, bytes: Int, clientBackedUp: Bool = false) {
        session.consume(stream: id, bytes: bytes)
        if let stream = streams[id] {
            let resized = stream.receiveWindow.consumed(bytes, clientBackedUp: clientBackedUp) {
                stream.handler?.clientIsKeepingUp == true
            }
            if let resized { session.setReceiveWindow(stream: id, size: resized) }
        }
        scheduleFlush()
    }

    /// Flushes after the work already queued on the loop, so the frames of everything that happened meanwhile
    /// (several clients' requests: each client's read event is its own turn) share TLS records and one socket
    /// write. A queued block on purpose: flushing at the end of each turn instead (`atEndOfTurn`, as clients do)
    /// cost one TLS record and one write per request and halved the requests per second at c=64.
    private func scheduleFlush() {
        guard !flushScheduled, !isClosed else { return }
        flushScheduled = true
        let box = WeakLoopBound(self)
        transport.loop.execute {
            guard let connection = box.value else { return }
            connection.flushScheduled = false
            connection.flush()
        }
    }

    func cancel(stream id: Int32) {
        guard streams.removeValue(forID: id) != nil else { return }
        session.resetStream(id, errorCode: 8)  // CANCEL
        flush()
        pool.streamFinished(on: self)
    }

    /// GOAWAY: let streams finish, open no new ones here.
    func goAway() {
        session.goAway()
        flush()
    }

    func close(failure: UpstreamFailure? = nil, kind: UpstreamErrorKind? = nil) {
        guard !isClosed else { return }
        if let failure { transport.fail(failure, kind: kind) } else { transport.close() }
    }

    /// Takes no new streams: GOAWAY sent or received.
    var isDraining: Bool { session.isGoingAway }

    /// Sends a PING now unless one is outstanding (the readiness monitor's check of an idle connection); the answer
    /// moves `lastRead`, and the health check drops the connection if none comes within `timeout` (by default
    /// `HTTP2_PING_TIMEOUT_SECONDS`).
    func probe(timeout: Duration? = nil) {
        guard !isClosed, !pingOutstanding else { return }
        sendPing(timeout: timeout ?? pool.healthCheck.pingTimeout)
        scheduleHealthCheck(after: pingLimit)
    }

    /// Moves session output to the socket while the socket has room.
    func flush() {
        guard !isClosed else { return }
        if inFeed || inFlush {
            // Events delivered from inside feed/takeOutput may ask for a flush: do it after, in wire order.
            flushPending = true
            return
        }
        inFlush = true
        repeat {
            flushPending = false
            while transport.bufferedWriteBytes < Self.writeHighWater {
                let out = session.takeOutput(max: Self.writeHighWater)
                if out.isEmpty { break }
                transport.write(out)
                if isClosed {
                    inFlush = false
                    return
                }
            }
        } while flushPending && transport.bufferedWriteBytes < Self.writeHighWater
        inFlush = false
        // Bodies may have moved into nghttp2: let paused clients continue.
        streams.forEachValue { stream in
            if stream.bodyPaused { stream.checkBodyDrained() }
        }
        if !session.wantsReadOrWrite && streams.isEmpty && transport.bufferedWriteBytes == 0 {
            close()
        }
    }

    // MARK: transport events (forwarded by the pool)

    func didRead(_ bytes: ByteBuffer) {
        lastRead = .now()
        pingOutstanding = false
        inFeed = true
        do {
            try session.feed(bytes)
        } catch {
            inFeed = false
            close(failure: .badGateway("HTTP/2 protocol error: \(error)"))
            return
        }
        inFeed = false
        flush()
    }

    func didDrainWrites() { flush() }

    func didClose(failure: UpstreamFailure?) {
        isClosed = true
        healthTimer?.cancel()
        healthTimer = nil
        let orphans = streams
        streams.removeAll()
        let reason = failure ?? .badGateway("the apiserver closed the connection")
        for (id, stream) in orphans.sortedEntries() {
            let point: UpstreamFailurePoint
            if stream.responseStarted {
                point = .final
            } else {
                point = session.requestWasSent(stream: id) ? .lostBeforeResponse : .notSent
            }
            stream.fail(reason, at: point)
        }
    }

    // MARK: health checks

    private func scheduleHealthCheck(after delay: Duration) {
        healthTimer?.cancel()
        let box = WeakLoopBound(self)
        healthTimer = transport.loop.scheduleTimer(after: delay) {
            box.value?.healthCheck()
        }
    }

    private func healthCheck() {
        guard !isClosed else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        let pingTimeout = pool.healthCheck.pingTimeout
        if pingOutstanding {
            let waited = now - pingSentAt
            let limit = Self.nanoseconds(pingLimit)
            if waited >= limit {
                pool.connectionMissedPing(self)
                close(failure: .badGateway("the apiserver did not answer a PING within \(pingLimit)"), kind: .healthCheck)
            } else {
                scheduleHealthCheck(after: .nanoseconds(Int64(limit - waited)))
            }
            return
        }
        guard let readIdle = pool.healthCheck.readIdle else { return }
        let silentNanos = now - lastRead.uptimeNanoseconds
        let threshold = Self.nanoseconds(readIdle)
        if silentNanos >= threshold {
            sendPing(timeout: pingTimeout)
            scheduleHealthCheck(after: pingTimeout)
        } else {
            scheduleHealthCheck(after: .nanoseconds(Int64(threshold - silentNanos)))
        }
    }

    private func sendPing(timeout: Duration) {
        pingOutstanding = true
        pingLimit = timeout
        pingSentAt = DispatchTime.now().uptimeNanoseconds
        session.ping()
        flush()
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        UInt64(max(0, duration.components.seconds)) * 1_000_000_000
            + UInt64(max(0, duration.components.attoseconds / 1_000_000_000))
    }

    // MARK: HTTP2SessionDelegate

    func session(_ s: HTTP2Session, didReceiveResponseHead status: Int, headers: HTTPHeaders, stream: Int32) {
        streams[stream]?.receivedHead(status: status, headers: headers)
    }

    func session(_ s: HTTP2Session, didReceiveData bytes: ByteBuffer, stream: Int32) {
        if let handler = streams[stream]?.handler {
            handler.upstreamDidReceiveBody(bytes)
        } else {
            // Stream cancelled locally: give the window back at once.
            session.consume(stream: stream, bytes: bytes.readableBytes)
        }
    }

    func session(_ s: HTTP2Session, streamDidEnd stream: Int32) {
        guard let upstream = streams.removeValue(forID: stream) else { return }
        lastActivity = .now()
        upstream.state = .finished
        upstream.deliverEnd()
        pool.streamFinished(on: self)
    }

    func session(_ s: HTTP2Session, streamDidClose stream: Int32, errorCode: UInt32) {
        guard let upstream = streams.removeValue(forID: stream) else { return }
        lastActivity = .now()
        let name = HTTP2ErrorCode.name(errorCode)
        // REFUSED_STREAM: the server did not process it (RFC 9113 §8.7), so it may go elsewhere.
        upstream.fail(
            .badGateway("the apiserver reset the stream (\(name))"),
            at: errorCode == HTTP2ErrorCode.refusedStream && !upstream.responseStarted ? .notSent : .final)
        pool.streamFinished(on: self)
    }

    func session(_ s: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: UInt32) {
        // Streams above lastStreamID were never processed: the pool may retry them elsewhere.
        let refused = streams.sortedEntries().filter { $0.id > lastStreamID }
        for (id, _) in refused { streams.removeValue(forID: id) }
        pool.connectionIsGoingAway(self, refused: refused.map(\.value))
    }

    func sessionDidReceivePingAck(_ s: HTTP2Session) {
        pingOutstanding = false
    }

    func sessionRemoteSettingsChanged(_ s: HTTP2Session) {
        pool.capacityChanged(self)
    }
}
