import Dispatch
import Logging

/// One client connection (HTTP/1.x over plain TCP or a unix socket) and the exchanges it carries, in order.
/// Confined to its loop.
///
/// Pipelined requests are answered in order: the next request starts when the current response is complete;
/// requests parsed meanwhile wait in `pendingEvents` (reading pauses when that queue grows).
final class ClientConnection: StreamConnectionDelegate, EndOfTurnWork {
    static let lingerTimeout: Duration = .seconds(2)
    /// How long a closing connection may sit with unwritten response bytes before it is dropped.
    static let closingStallTimeout: Duration = .seconds(60)
    static let pendingHighWater = 256 * 1024

    let socket: StreamConnection
    let peer: SocketAddress
    let context: LoopContext
    let id: UInt64

    /// The request parser, made when bytes arrive. Between requests a parser holds nothing a fresh one would not
    /// (`isBetweenRequests`), so it is let go when a watch or a followed log starts, and by the loop's once-a-second
    /// sweep: an idle watch or keep-alive connection keeps 8 bytes for it instead of about 270 (the parser is 256
    /// bytes, and its buffers).
    private var parserBox: RequestParserBox?
    private var pendingEvents: [HTTP1RequestEvent] = []
    private var pendingBytes = 0
    private var parseError: HTTP1Error?
    private var current: ProxyExchange?
    /// Set once a request asked for a protocol upgrade: from then on client bytes are the tunnel's, not HTTP.
    private var tunnel: UpgradeTunnel?
    /// Between a request's head and its `.end` event.
    private var awaitingEndOfRequest = false
    private var readPausedForPipeline = false
    private var readPausedForBody = false
    private var clientEOF = false
    private var closing = false
    private var closed = false
    private var flushScheduled = false   // (the small fields together: no padding between them)
    private var timerKind = TimerKind.header
    /// Deadline (uptime nanoseconds, 0 = none) checked by the loop's once-a-second sweep: no timer is created or
    /// cancelled per request.
    private var deadline: UInt64 = 0
    /// Set at accept for a connection that must not be served (`--accept-uids`): its first request gets this.
    var refusal: LocalResponse?
    /// Small writes (heads, chunk framing) collected into one buffer; it is queued on the socket before the next
    /// body buffer, and everything queued in one loop turn goes out with one `sendmsg` at its end.
    private var pendingOutput = ByteBuffer()
    /// Body buffers smaller than this are copied into `pendingOutput` rather than queued as their own iovec.
    static let copyBelow = 512

    init(socket: StreamConnection, peer: SocketAddress, context: LoopContext, id: UInt64) {
        self.socket = socket
        self.peer = peer
        self.context = context
        self.id = id
    }

    func start() {
        socket.delegate = self
        context.register(self)
        socket.start()
        // The header deadline runs from accept: a client that connects and sends nothing gets its 408 too.
        arm(timeout: timeouts.header, kind: .header)
    }

    private var timeouts: ClientTimeouts { context.shared.policy.timeouts }

    // MARK: reading requests

    func connection(_ c: StreamConnection, didRead bytes: ByteBuffer) {
        guard !closing else { return }
        if let tunnel {
            tunnel.clientSent(bytes)
            return
        }
        if current == nil && timerKind == .idle {
            // First bytes of a request head: from now on the (shorter) header deadline runs.
            arm(timeout: timeouts.header, kind: .header)
        }
        let box: RequestParserBox
        if let parserBox {
            box = parserBox
        } else {
            box = RequestParserBox(HTTP1RequestParser(limits: context.shared.limits))
            parserBox = box
        }
        do {
            let events = try box.parser.feed(bytes.readableBytesArray[...])
            enqueue(events)
        } catch {
            parseError = error
        }
        process()
        if awaitingEndOfRequest && !closing && !readPausedForPipeline && !readPausedForBody {
            // Request-body bytes arrived: the stall deadline starts over.
            arm(timeout: timeouts.body, kind: .body)
        }
    }

    func connectionDidReadEOF(_ c: StreamConnection) {
        clientEOF = true
        if let tunnel {
            tunnel.clientEnded()
            return
        }
        if closing {
            // The EOF the linger waits for (finishAfterFlush): done once the response is out. (Waiting out the linger
            // regardless held every answered connection for 2-3 s: thousands of descriptors under a flood of
            // `Connection: close` requests, found by scripts/soak.)
            if socket.bufferedWriteBytes == 0 && pendingOutput.isEmpty { close() }
            return
        }
        if parseError == nil, let parserBox {
            do {
                try parserBox.parser.finish()
            } catch {
                parseError = error
            }
        }
        if let current, !current.requestComplete || current.isQuietByDesign {
            // The request was cut short, or the client went away during a watch or a followed log (which may not
            // write again for hours, holding its upstream stream until then; a half-closed watcher cannot be told
            // apart from a gone one, see LongRunningRequest). As kubectl proxy (Go's server) does: cancelled.
            current.cancel()
            self.current = nil
            close()
            return
        }
        process()
        if current == nil && pendingEvents.isEmpty && !closing {
            close()
        } else if current != nil && !closing {
            // A half-closed client may still read its response, but one that has gone away entirely is only
            // noticed when a write fails: a quiet watch would hold its connection (and upstream stream) for good.
            // The response may go on while it moves; quiet for the idle time, the connection is closed.
            arm(timeout: timeouts.idle, kind: .halfClosed)
        }
    }

    private func enqueue(_ events: [HTTP1RequestEvent]) {
        for event in events {
            if case .body(let slice) = event { pendingBytes += slice.count }
            pendingEvents.append(event)
        }
    }

    /// Moves queued events into exchanges: the current exchange gets its body; a new exchange starts once the
    /// current one finished.
    private func process() {
        while !closing {
            if awaitingEndOfRequest {
                // Body events of the current request (the exchange may already have answered).
                guard !pendingEvents.isEmpty else {
                    if let error = parseError {
                        // The body is malformed or oversized (say a chunk extension over the limit): the request
                        // cannot complete, so it is answered now instead of waiting for an end that never comes.
                        parseError = nil
                        failRequestBody(.badRequest(status: error.status, reason: error.reason), why: error.reason)
                    }
                    break
                }
                let event = pendingEvents.removeFirst()
                switch event {
                case .head:
                    preconditionFailure("a request head inside a body")
                case .body(let slice):
                    pendingBytes -= slice.count
                    current?.clientSentBody(Array(slice))
                case .end:
                    awaitingEndOfRequest = false
                    if timerKind == .body { deadline = 0 }
                    current?.clientEndedBody()
                }
                continue
            }
            if current != nil { break }  // the next request waits for this response
            guard !pendingEvents.isEmpty else {
                if let error = parseError {
                    parseError = nil
                    respondToParseError(error)
                }
                break
            }
            let event = pendingEvents.removeFirst()
            guard case .head(let head) = event else {
                preconditionFailure("request events must start with a head")
            }
            deadline = 0
            timerKind = .idle
            if clientEOF { arm(timeout: timeouts.idle, kind: .halfClosed) }
            if let refusal {
                // Refused at accept (--accept-uids): nothing is forwarded.
                writeLocal(refusal, headOnly: head.method == "HEAD", keepAlive: false, version: head.version)
                finishAfterFlush()
                break
            }
            awaitingEndOfRequest = true
            let exchange = ProxyExchange(connection: self, head: head)
            current = exchange
            exchange.begin()
            if exchange.kind.isLongRunning, parserBox?.parser.isBetweenRequests == true {
                // A watch or a followed log may last hours with nothing to parse: the parser goes now, so the
                // next connection reuses its memory (let go later, it would stay a hole in the heap).
                parserBox = nil
            }
        }
        // Nothing queued: give the queue's storage back (an idle watch would keep it for hours).
        if pendingEvents.isEmpty { pendingEvents = [] }
        updateReadPausing()
    }

    private func respondToParseError(_ error: HTTP1Error) {
        context.metrics.values.malformedRequests[error.status, default: 0] += 1
        context.shared.logger.info(
            "rejecting malformed request",
            metadata: [LogKeys.connectionID: "\(id)", "status": "\(error.status)", "reason": "\(error.reason)"])
        writeLocal(.badRequest(status: error.status, reason: error.reason), headOnly: false, keepAlive: false,
                   version: .http1_1)
        finishAfterFlush()
    }

    private func updateReadPausing() {
        let shouldPauseForPipeline = pendingBytes > Self.pendingHighWater
            || (current != nil && pendingEvents.count > 64)
        if shouldPauseForPipeline != readPausedForPipeline {
            readPausedForPipeline = shouldPauseForPipeline
            applyReadPausing()
        }
    }

    private func applyReadPausing() {
        if readPausedForPipeline || readPausedForBody {
            socket.pauseReading()
            // proxyd holds the client back: a body that does not move meanwhile is not the client's fault.
            if timerKind == .body { deadline = 0 }
        } else {
            socket.resumeReading()
            if awaitingEndOfRequest && !closing && tunnel == nil && (deadline == 0 || timerKind == .body) {
                arm(timeout: timeouts.body, kind: .body)
            }
        }
    }

    /// The current exchange's upstream body queue is full (or drained again).
    func setBodyBackpressure(_ paused: Bool) {
        guard paused != readPausedForBody else { return }
        readPausedForBody = paused
        applyReadPausing()
    }

    // MARK: writing responses

    /// Queues `bytes` (copied: heads and other small pieces); sent at the end of this loop turn.
    func write(_ bytes: [UInt8]) {
        guard !closed, !bytes.isEmpty else { return }
        noteResponseMoved()
        pendingOutput.writeBytes(bytes)
        scheduleFlush()
    }

    /// Queues a response head, serialised straight into the output buffer; sent at the end of this loop turn.
    func writeResponseHead(_ head: HTTPResponseHead) {
        guard !closed else { return }
        noteResponseMoved()
        HTTP1Serializer.writeResponseHead(head, into: &pendingOutput)
        scheduleFlush()
    }

    /// Queues `bytes` as they are (no copy unless tiny); sent at the end of this loop turn.
    func write(_ bytes: ByteBuffer) {
        guard !closed, !bytes.isEmpty else { return }
        noteResponseMoved()
        if bytes.readableBytes < Self.copyBelow {
            pendingOutput.writeBuffer(bytes)
        } else {
            queuePendingOutput()
            socket.enqueue(bytes)
        }
        scheduleFlush()
    }

    /// Queues one chunk of a chunked body: size line, `payload` (not copied), CRLF.
    func writeChunk(_ payload: ByteBuffer) {
        guard !closed, !payload.isEmpty else { return }
        HTTP1Serializer.writeChunkHeader(length: payload.readableBytes, into: &pendingOutput)
        write(payload)
        pendingOutput.writeBytes(HTTP1Serializer.crlf)
    }

    private func queuePendingOutput() {
        guard !pendingOutput.isEmpty else { return }
        socket.enqueue(pendingOutput)
        pendingOutput = ByteBuffer()
    }

    /// A half-closed client's response is moving: its quiet deadline starts over.
    private func noteResponseMoved() {
        if timerKind == .halfClosed && !closing { arm(timeout: timeouts.idle, kind: .halfClosed) }
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.loop.atEndOfTurn(self)
    }

    func endOfTurn() { flushOutput() }

    /// Sends what `write` queued during this loop turn (one `sendmsg` for all of it).
    func flushOutput() {
        flushScheduled = false
        guard !closed else { return }
        queuePendingOutput()
        socket.flushQueued()
        if socket.bufferedWriteBytes == 0 {
            // Everything went out at once: no drain event will come, so let the upstream side go on now.
            current?.clientDrained(backedUp: false)
            tunnel?.clientDrained()
        }
    }

    var bufferedWriteBytes: Int { socket.bufferedWriteBytes + pendingOutput.readableBytes }

    /// Writes a complete local response.
    func writeLocal(_ response: LocalResponse, headOnly: Bool, keepAlive: Bool, version: HTTPVersion) {
        write(response.wireBytes(headOnly: headOnly, keepAlive: keepAlive, version: version))
    }

    /// Called by the current exchange when its response is complete.
    func exchangeFinished(_ exchange: ProxyExchange, keepAlive: Bool) {
        guard current === exchange else { return }
        current = nil
        readPausedForBody = false
        applyReadPausing()
        if !keepAlive || context.draining || (clientEOF && pendingEvents.isEmpty) {
            finishAfterFlush()
            return
        }
        if parserBox?.parser.hasPartialMessage == true {
            arm(timeout: timeouts.header, kind: .header)  // the next head is already on its way
        } else {
            armIdleTimer()
        }
        process()
    }

    /// The exchange cannot continue (upstream died mid-body): drop the connection so the client sees the cut.
    func abort() {
        current = nil
        flushOutput()  // what the client was already promised (head, partial body) goes out before the cut
        close()
    }

    // MARK: closing

    /// Half-closes after queued bytes are written, then closes on the client's EOF or after a short linger.
    private func finishAfterFlush() {
        guard !closing else { return }
        closing = true
        pendingEvents.removeAll()
        flushOutput()
        socket.shutdownWrite()
        socket.resumeReading()  // to see the client's EOF
        if socket.bufferedWriteBytes > 0 {
            // A slow client is still receiving the end of its response: the short linger starts once everything
            // is written (connectionDidDrainWrites); meanwhile only a client that stops reading is cut off.
            arm(timeout: Self.closingStallTimeout, kind: .closing)
        } else {
            arm(timeout: Self.lingerTimeout, kind: .closing)
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        closing = true
        deadline = 0
        current?.cancel()
        current = nil
        tunnel?.cancel()
        tunnel = nil
        socket.close()
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {
        if closing && !closed {
            if clientEOF {
                close()
            } else {
                arm(timeout: Self.lingerTimeout, kind: .closing)
            }
            return
        }
        current?.clientDrained()
        tunnel?.clientDrained()
    }

    func connection(_ c: StreamConnection, didFail error: IOError) {
        context.shared.logger.debug("client connection failed: \(error)", metadata: [LogKeys.connectionID: "\(id)"])
        close()
    }

    func connectionDidClose(_ c: StreamConnection) {
        closed = true
        deadline = 0
        current?.cancel()
        current = nil
        context.unregister(self)
    }

    // MARK: timers

    /// What the single deadline stands for.
    private enum TimerKind {
        /// Waiting for (the rest of) a request head: 408.
        case header
        /// Keep-alive with nothing in progress: close quietly.
        case idle
        /// A request body that stopped arriving: 408, upstream stream reset, close.
        case body
        /// Finishing: linger for the client's EOF, or a stuck write.
        case closing
        /// The client half-closed during a response: close if the response stays quiet.
        case halfClosed
    }

    private func armIdleTimer() {
        arm(timeout: timeouts.idle, kind: .idle)
    }

    private func arm(timeout: Duration, kind: TimerKind) {
        timerKind = kind
        let nanos = UInt64(timeout.components.seconds) * 1_000_000_000
            + UInt64(timeout.components.attoseconds / 1_000_000_000)
        deadline = DispatchTime.now().uptimeNanoseconds + nanos
    }

    /// Called by the loop's sweep (once a second): fires the timeout once its deadline passed, and lets go of a
    /// parser that sits between requests.
    func checkDeadline(now: UInt64) {
        if let parserBox, parserBox.parser.isBetweenRequests { self.parserBox = nil }
        guard deadline != 0, now >= deadline else { return }
        timerFired()
    }

    private func timerFired() {
        deadline = 0
        if closing {
            close()
            return
        }
        if timerKind == .body {
            guard awaitingEndOfRequest, tunnel == nil else { return }
            failRequestBody(
                .badRequest(status: 408, reason: "Request Timeout"),
                why: "no request-body byte for \(timeouts.body)")
            return
        }
        if timerKind == .halfClosed {
            context.shared.logger.debug(
                "closing a half-closed connection whose response was quiet for \(timeouts.idle)",
                metadata: [LogKeys.connectionID: "\(id)"])
            close()
            return
        }
        guard current == nil else { return }
        if timerKind == .header {
            // RFC 9110 §15.5.9: the client did not finish its request head in time.
            context.metrics.values.malformedRequests[408, default: 0] += 1
            writeLocal(.badRequest(status: 408, reason: "Request Timeout"), headOnly: false, keepAlive: false,
                       version: .http1_1)
            finishAfterFlush()
        } else {
            close()
        }
    }

    /// The current request's body cannot be completed (stalled, malformed or oversized): the upstream stream is
    /// reset, the client gets `response` unless its response already started (then the connection is cut), and
    /// the connection closes.
    private func failRequestBody(_ response: LocalResponse, why: String) {
        context.shared.logger.info(
            "request body failed: \(why)",
            metadata: [LogKeys.connectionID: "\(id)", "status": "\(response.status)"])
        awaitingEndOfRequest = false
        pendingEvents.removeAll()
        pendingBytes = 0
        if let current, !current.isFinished {
            current.requestBodyFailed(response)  // ends in exchangeFinished (closing) or abort()
        }
        if !closing { finishAfterFlush() }
    }

    // MARK: protocol upgrades

    /// Bytes the client sent after an upgrade request's head, in the same reads.
    func takeTunnelBytes() -> [UInt8] { parserBox?.parser.takeRemainingBytes() ?? [] }

    func beginUpgrade(_ tunnel: UpgradeTunnel) {
        self.tunnel = tunnel
        deadline = 0  // tunnels have no idle timeout (exec sessions, port-forwards)
        pendingEvents.removeAll()
    }

    /// Upstream ended the tunnel (or a refusal was relayed): finish writing, then close.
    func tunnelEnded(_ tunnel: UpgradeTunnel) {
        guard self.tunnel === tunnel else { return }
        self.tunnel = nil
        current?.upgradeFinished()
        current = nil
        finishAfterFlush()
    }

    /// The upgrade could not be set up: answer with a Status (nothing was sent yet) and close.
    func upgradeFailed(_ failure: UpstreamFailure) {
        tunnel = nil
        current?.upgradeFinished()
        current = nil
        context.shared.logger.warning("upgrade failed: \(failure)")
        writeLocal(.upstreamFailure(failure), headOnly: false, keepAlive: false, version: .http1_1)
        finishAfterFlush()
    }

    /// Pauses reading the client while the upstream side of a tunnel is backed up.
    func setTunnelBackpressure(_ paused: Bool) {
        setBodyBackpressure(paused)
    }

    /// Closes an idle connection during a graceful stop; busy ones finish their exchange first.
    func closeIfIdle() {
        if current == nil { close() }
    }
}

/// The request parser out of line: most of a connection's life (a watch, keep-alive) is spent between requests,
/// without one.
private final class RequestParserBox {
    var parser: HTTP1RequestParser
    init(_ parser: HTTP1RequestParser) { self.parser = parser }
}
