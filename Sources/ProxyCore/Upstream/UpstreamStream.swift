/// What a request looks like to the upstream side: already routed, filtered and rewritten.
struct UpstreamRequest: Sendable {
    var method: String
    /// Path and query for the apiserver (`:path`).
    var target: String
    /// Regular header fields, hop-by-hop removed, credentials added. No `Host`: the connection adds the
    /// apiserver's authority.
    var headers: HTTPHeaders
    /// Whether a request body follows (`sendBody`/`endBody`).
    var hasBody: Bool
}

/// How far a failed exchange got, which decides whether it may be sent again (to another apiserver).
enum UpstreamFailurePoint: Equatable {
    /// Nothing of the request reached the apiserver: the connection or TLS setup failed, the server refused the
    /// stream (REFUSED_STREAM, or above a GOAWAY's last stream id), or its HEADERS never left proxyd. Safe to send
    /// again whatever the method.
    case notSent
    /// The request went out, then the connection to the apiserver was lost before the response head.
    case lostBeforeResponse
    /// Anything else (the response had started, the server reset the stream, proxyd is stopping): never resent.
    case final
}

/// Takes back a failed stream that may be sent again (`LoopBalancer`, with several apiservers).
protocol UpstreamStreamRerouter: AnyObject {
    /// Called for every failure of a stream at a server, `.final` ones included.
    /// - Returns: true when the stream will be sent again (its handler hears nothing of this failure).
    func reroute(_ stream: UpstreamStream, after failure: UpstreamFailure, at point: UpstreamFailurePoint) -> Bool
}

/// Receives one exchange's upstream events, always on the owning loop.
protocol UpstreamResponseHandler: AnyObject {
    func upstreamDidReceiveHead(status: Int, headers: HTTPHeaders)
    /// Body bytes of the response. The handler reports them with `UpstreamStream.consumed(_:)` once they reached
    /// the client socket; until then the apiserver's flow-control window (or the socket read) stays closed.
    func upstreamDidReceiveBody(_ bytes: ByteBuffer)
    func upstreamDidEnd()
    /// The exchange failed. `headSent` tells the handler nothing: it knows whether it already answered.
    func upstreamDidFail(_ failure: UpstreamFailure)
    /// The request-body queue went under its low watermark: the client socket may be read again.
    func upstreamRequestBodyDrained()
    /// Whether the client takes the response as fast as it comes (asked before a stream's window grows).
    var clientIsKeepingUp: Bool { get }
}

extension UpstreamResponseHandler {
    var clientIsKeepingUp: Bool { true }
}

/// One request/response exchange with the apiserver, as seen by the client side. Confined to its loop.
///
/// Starts `waiting` in its pool until a connection can carry it; body bytes sent meanwhile are queued here
/// (the client is paused above `bodyHighWater`, so the queue stays bounded).
final class UpstreamStream {
    static let bodyHighWater = 512 * 1024
    static let bodyLowWater = 128 * 1024

    enum State {
        case waiting
        case http2(HTTP2UpstreamConnection, Int32)
        case http1(HTTP1UpstreamConnection)
        case finished
    }

    /// The request as sent; its header fields are dropped once the response head arrived (it is never sent again
    /// then), so a watch that lasts hours does not keep its credentials and headers.
    private(set) var request: UpstreamRequest
    /// Held strongly until the exchange ends (`deliverEnd`, `deliverFailure`), is cancelled or detached: a handler
    /// that lets go of its stream detaches or cancels it first. (A weak reference would give every handler, one
    /// per request and so per watch, a side table for as long as it lives.)
    private(set) var handler: (any UpstreamResponseHandler)?
    var state: State = .waiting
    /// The receive window its HTTP/2 connection advertises for it (kept here rather than in a table per connection).
    var receiveWindow = StreamWindow()
    /// Body queued while waiting for a connection.
    var pendingBody: [[UInt8]] = []
    var pendingBodyBytes = 0
    var pendingEnd = false
    /// Whether the client was told to pause because the body queue was full.
    var bodyPaused = false

    // Several apiservers only (set by `LoopBalancer`; with one server none of this is used).
    /// Where failures that leave the request replayable go instead of the handler.
    weak var rerouter: (any UpstreamStreamRerouter)?
    /// The balancer's id of the server this attempt went to.
    var serverID = 0
    /// How often the request was sent again after `notSent` failures, and whether the one resend after a
    /// `lostBeforeResponse` was used.
    var resends = 0
    var resentAfterLoss = false
    /// Body chunks already handed to a connection, kept (by reference, not copied) so the request can be sent
    /// again; nil when not kept or once more than `replayLimit` bytes went out.
    private var replayBody: [[UInt8]]?
    private var replayBytes = 0
    private var replayEnded = false
    /// Largest request body kept for a resend: the body queue's own bound, so memory per stream at most doubles.
    static let replayLimit = bodyHighWater
    /// The response head arrived.
    private(set) var responseStarted = false

    init(request: UpstreamRequest, handler: any UpstreamResponseHandler) {
        self.request = request
        self.handler = handler
    }

    /// Queues request-body bytes.
    func sendBody(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        switch state {
        case .waiting:
            pendingBody.append(bytes)
            pendingBodyBytes += bytes.count
        case .http2(let connection, let id):
            if replayBody != nil { keepForReplay(bytes) }
            connection.sendBody(bytes, stream: id)
        case .http1(let connection):
            if replayBody != nil { keepForReplay(bytes) }
            connection.sendBody(bytes)
        case .finished:
            break
        }
    }

    func endBody() {
        switch state {
        case .waiting: pendingEnd = true
        case .http2(let connection, let id):
            replayEnded = true
            connection.endBody(stream: id)
        case .http1(let connection):
            replayEnded = true
            connection.endBody()
        case .finished: break
        }
    }

    /// Request-body bytes accepted but not yet handed to the socket; the client pauses above `bodyHighWater`.
    var bufferedBodyBytes: Int {
        switch state {
        case .waiting: return pendingBodyBytes
        case .http2(let connection, let id): return connection.bufferedBodyBytes(stream: id)
        case .http1(let connection): return connection.bufferedBodyBytes
        case .finished: return 0
        }
    }

    /// `n` response-body bytes reached the client socket: open the window for as many. `clientBackedUp`: the client
    /// socket had to wait (a slow client), which shrinks the stream's window back to its initial size.
    func consumed(_ n: Int, clientBackedUp: Bool = false) {
        switch state {
        case .http2(let connection, let id): connection.consume(stream: id, bytes: n, clientBackedUp: clientBackedUp)
        case .http1(let connection): connection.consumed(n)
        case .waiting, .finished: break
        }
    }

    /// The client went away: reset the upstream stream (or drop the HTTP/1 connection).
    func cancel() {
        let old = state
        state = .finished
        handler = nil
        switch old {
        case .http2(let connection, let id): connection.cancel(stream: id)
        case .http1(let connection): connection.cancelExchange()
        case .waiting, .finished: break
        }
    }

    /// The client side needs nothing more (a bodyless response is complete): keep the exchange running to its
    /// natural end upstream, but deliver nothing. Any body bytes are given back to flow control at once.
    func detach() {
        handler = nil
    }

    /// Hands over what was queued while waiting; called once a connection took the stream.
    func takePendingBody() -> (chunks: [[UInt8]], ended: Bool) {
        let out = (pendingBody, pendingEnd)
        if replayBody != nil {
            for chunk in pendingBody { keepForReplay(chunk) }
            replayEnded = pendingEnd
        }
        pendingBody = []
        pendingBodyBytes = 0
        return out
    }

    // MARK: outcome, as reported by connections and pools

    /// The final response head arrived: hand it on. From now on the exchange is never sent again.
    func receivedHead(status: Int, headers: HTTPHeaders) {
        responseStarted = true
        if replayBody != nil { replayBody = nil }
        request.headers = HTTPHeaders()
        handler?.upstreamDidReceiveHead(status: status, headers: headers)
    }

    /// The exchange failed at `point`: its rerouter (which hears of every failure, to count it) may send it again,
    /// else the handler hears of it.
    func fail(_ failure: UpstreamFailure, at point: UpstreamFailurePoint) {
        state = .finished
        if let rerouter, rerouter.reroute(self, after: failure, at: point) { return }
        deliverFailure(failure)
    }

    /// The response is complete: the handler hears of it, and the stream lets go of it.
    func deliverEnd() {
        let handler = self.handler
        self.handler = nil
        handler?.upstreamDidEnd()
    }

    /// The exchange failed for good: the handler hears of it, and the stream lets go of it.
    func deliverFailure(_ failure: UpstreamFailure) {
        let handler = self.handler
        self.handler = nil
        handler?.upstreamDidFail(failure)
    }

    // MARK: resending (several apiservers)

    /// Starts keeping the body chunks that go out, so the request can be sent again.
    func keepBodyForReplay() {
        if request.hasBody { replayBody = [] }
    }

    /// Whether everything needed to send the request again is at hand.
    var isReplayable: Bool { !responseStarted && (!request.hasBody || replayBody != nil) }

    /// Back to `waiting`, with the body sent so far queued again in front of what has not been sent yet.
    func prepareForResend() {
        state = .waiting
        if let replayBody, !replayBody.isEmpty {
            pendingBody = replayBody + pendingBody
            pendingBodyBytes += replayBytes
        }
        pendingEnd = pendingEnd || replayEnded
        if replayBody != nil { replayBody = [] }
        replayBytes = 0
        replayEnded = false
    }

    private func keepForReplay(_ chunk: [UInt8]) {
        replayBytes += chunk.count
        if replayBytes > Self.replayLimit {
            replayBody = nil
        } else {
            replayBody?.append(chunk)
        }
    }

    func checkBodyDrained() {
        if bodyPaused && bufferedBodyBytes <= Self.bodyLowWater {
            bodyPaused = false
            handler?.upstreamRequestBodyDrained()
        }
    }
}
