import Dispatch

/// One connection to an admin listener: requests are parsed by the strict HTTP/1.1 parser and answered one at a
/// time, in order (reading pauses while an answer is being gathered); keep-alive as the client asks, closed after
/// `idleTimeout` without a request. Request bodies are read and ignored. Confined to the admin loop.
final class AdminConnection: StreamConnectionDelegate {
    static let idleTimeout: Duration = .seconds(60)

    private let socket: StreamConnection
    private let roles: Set<AdminRole>
    private let server: AdminServer
    private var parser = HTTP1RequestParser(limits: HTTP1Limits())
    private var heads: [HTTPRequestHead] = []
    private var answering = false
    private var closing = false
    private var closed = false
    private var idleTimer: LoopTimer?
    /// The connection keeps itself alive until its socket closed (the socket's delegate reference is weak).
    private var keepAlive: AdminConnection?

    init(socket: StreamConnection, roles: Set<AdminRole>, server: AdminServer) {
        self.socket = socket
        self.roles = roles
        self.server = server
    }

    func start() {
        keepAlive = self
        socket.delegate = self
        socket.start()
        armIdleTimer()
    }

    func connection(_ c: StreamConnection, didRead bytes: ByteBuffer) {
        guard !closing else { return }
        do {
            for event in try parser.feed(bytes.readableBytesArray[...]) {
                if case .head(let head) = event { heads.append(head) }
            }
        } catch {
            respond(AdminAnswer(status: error.status, body: "\(error.status) \(error.reason)\n"), head: nil)
            return
        }
        next()
    }

    func connectionDidReadEOF(_ c: StreamConnection) {
        if heads.isEmpty && !answering { close() } else { closing = true }
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {
        if closing && !answering && heads.isEmpty { close() }
    }

    func connection(_ c: StreamConnection, didFail error: IOError) {
        close()
    }

    func connectionDidClose(_ c: StreamConnection) {
        closed = true
        idleTimer?.cancel()
        idleTimer = nil
        server.connectionClosed()
        keepAlive = nil
    }

    /// Starts answering the next queued request, if none is being answered.
    private func next() {
        guard !answering, !closed, !heads.isEmpty else { return }
        let head = heads.removeFirst()
        answering = true
        idleTimer?.cancel()
        idleTimer = nil
        socket.pauseReading()
        let box = LoopBound(self)
        let loop = socket.loop
        server.answer(method: head.method, target: head.target, roles: roles) { answer in
            loop.execute { box.value.respond(answer, head: head) }
        }
    }

    private func respond(_ answer: AdminAnswer, head: HTTPRequestHead?) {
        answering = false
        guard !closed else { return }
        let keepAlive = head?.keepAlive ?? false
        var headers = HTTPHeaders([
            ("Content-Type", answer.contentType),
            ("Content-Length", String(answer.body.count)),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
            ("Date", HTTPDate.now()),
        ])
        for (name, value) in answer.extraHeaders { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        var out = HTTP1Serializer.responseHead(HTTPResponseHead(status: answer.status, headers: headers))
        if head?.method != "HEAD" { out += answer.body }
        socket.write(out)
        if !keepAlive {
            closing = true
            heads.removeAll()
            socket.shutdownWrite()
            if socket.bufferedWriteBytes == 0 { close() }
            return
        }
        socket.resumeReading()
        if heads.isEmpty {
            if closing { close() } else { armIdleTimer() }
        } else {
            next()
        }
    }

    private func armIdleTimer() {
        idleTimer?.cancel()
        let box = WeakLoopBound(self)
        idleTimer = socket.loop.scheduleTimer(after: Self.idleTimeout) { box.value?.close() }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        idleTimer?.cancel()
        idleTimer = nil
        socket.close()
    }
}
