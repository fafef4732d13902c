import Dispatch

/// An HTTP/1.1 keep-alive connection to the apiserver (used when ALPN does not pick h2, or for `http://`
/// servers): one exchange at a time. Confined to its pool's loop.
///
/// Backpressure: response bytes handed to the client side but not yet written to the client socket are counted;
/// above `readHighWater` the upstream socket is not read, so the apiserver's TCP window closes.
final class HTTP1UpstreamConnection {
    static let readHighWater = 1 << 20
    static let readLowWater = 256 * 1024

    let id: Int
    let transport: UpstreamTransport
    private unowned let pool: UpstreamPool
    private(set) var current: UpstreamStream?
    private var parser: HTTP1ResponseParser?
    private var chunkedRequestBody = false
    private var requestComplete = false
    private var responseKeepAlive = true
    private var outstanding = 0
    private var readPaused = false
    private(set) var isClosed = false
    private(set) var lastActivity = DispatchTime.now()

    init(id: Int, transport: UpstreamTransport, pool: UpstreamPool) {
        self.id = id
        self.transport = transport
        self.pool = pool
    }


    func attach(_ stream: UpstreamStream) {
        precondition(current == nil, "HTTP/1 upstream connection carries one exchange at a time")
        current = stream
        stream.state = .http1(self)
        parser = HTTP1ResponseParser(requestMethod: stream.request.method)
        outstanding = 0
        responseKeepAlive = true
        requestComplete = !stream.request.hasBody
        var headers = HTTPHeaders([("Host", pool.requestAuthority)])
        for field in stream.request.headers.fields { headers.add(name: field.name, value: field.value) }
        chunkedRequestBody = stream.request.hasBody && !headers.contains("content-length")
        if chunkedRequestBody { headers.add(name: "Transfer-Encoding", value: "chunked") }
        transport.write(
            HTTP1Serializer.requestHead(method: stream.request.method, target: stream.request.target, headers: headers))
        let pending = stream.takePendingBody()
        for chunk in pending.chunks { sendBody(chunk) }
        if pending.ended { endBody() }
        stream.checkBodyDrained()
    }

    func sendBody(_ bytes: [UInt8]) {
        guard !isClosed, !bytes.isEmpty else { return }
        transport.write(chunkedRequestBody ? HTTP1Serializer.chunk(bytes[...]) : bytes)
    }

    func endBody() {
        guard !isClosed, !requestComplete else { return }
        requestComplete = true
        if chunkedRequestBody { transport.write(HTTP1Serializer.lastChunk) }
    }

    var bufferedBodyBytes: Int { transport.bufferedWriteBytes }

    func consumed(_ n: Int) {
        outstanding -= n
        if readPaused && outstanding <= Self.readLowWater {
            readPaused = false
            transport.resumeReading()
        }
    }

    /// The client went away mid-exchange: the only way to stop an HTTP/1 response is to drop the connection.
    func cancelExchange() {
        current = nil
        close()
    }

    func close(failure: UpstreamFailure? = nil) {
        guard !isClosed else { return }
        if let failure { transport.fail(failure) } else { transport.close() }
    }

    // MARK: transport events (forwarded by the pool)

    func didRead(_ bytes: ByteBuffer) {
        guard var parser, let stream = current else {
            // Bytes with no exchange in flight: the server is confused; drop the connection.
            close()
            return
        }
        let events: [HTTP1ResponseBufferEvent]
        do {
            events = try parser.feed(bytes)  // body bytes as slices of `bytes`: no copy
        } catch {
            self.parser = parser
            close(failure: .badGateway("invalid HTTP/1.1 response from the apiserver: \(error)"))
            return
        }
        self.parser = parser
        deliver(events, to: stream)
    }

    private func deliver(_ events: [HTTP1ResponseBufferEvent], to stream: UpstreamStream) {
        for event in events {
            guard current === stream else { return }
            switch event {
            case .head(let head):
                pool.http1ResponseReceived()
                if head.version == .http1_0 || head.headers.containsToken("connection", "close") {
                    responseKeepAlive = false
                }
                stream.receivedHead(status: head.status, headers: head.headers)
            case .body(let slice):
                guard let handler = stream.handler else { continue }  // detached: nothing to deliver
                outstanding += slice.readableBytes
                handler.upstreamDidReceiveBody(slice)
                if !readPaused && outstanding > Self.readHighWater {
                    readPaused = true
                    transport.pauseReading()
                }
            case .end:
                finishExchange(stream)
            }
        }
    }

    private func finishExchange(_ stream: UpstreamStream) {
        current = nil
        parser = nil
        lastActivity = .now()
        stream.state = .finished
        let reusable = responseKeepAlive && requestComplete
        stream.deliverEnd()
        if reusable {
            if readPaused {
                readPaused = false
                transport.resumeReading()
            }
            pool.http1ConnectionIsIdle(self)
        } else {
            close()
        }
    }

    func didDrainWrites() {
        current?.checkBodyDrained()
    }

    func didClose(failure: UpstreamFailure?) {
        isClosed = true
        guard let stream = current else { return }
        current = nil
        // A close-delimited body ends at EOF.
        if failure == nil, var parser {
            if let events = try? parser.finish() {
                self.parser = nil
                current = stream
                deliver(events.map(HTTP1ResponseBufferEvent.init), to: stream)  // `.end` of a read-until-close body
                current = nil
                if case .finished = stream.state { return }
            }
        }
        stream.fail(
            failure ?? .badGateway("the apiserver closed the connection"),
            at: stream.responseStarted ? .final : .lostBeforeResponse)
    }
}
