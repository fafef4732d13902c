import NIOCore

/// SPDY/3.1 right on the upgraded connection (`Upgrade: SPDY/3.1`, kubectl's exec/attach/port-forward before
/// WebSockets, and its fallback when a WebSocket upgrade is refused).
final class SPDYConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let makeApplication: () -> any SPDYStreamApplication
    private var session: SPDYSession?
    private var lastWrite: EventLoopFuture<Void>?

    init(application: @escaping () -> any SPDYStreamApplication) {
        makeApplication = application
    }

    func handlerAdded(context: ChannelHandlerContext) {
        session = try? SPDYSession(
            application: makeApplication(),
            send: { [weak self] bytes in
                guard let self else { return }
                self.lastWrite = context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)))
            },
            close: { [weak self] in
                // After the last frame is out (NIO fails writes still pending at close).
                if let lastWrite = self?.lastWrite {
                    lastWrite.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                } else {
                    context.close(promise: nil)
                }
            })
        if session == nil { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        ended()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        session?.receive(buffer.readableBytesView)
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        ended()
        context.close(promise: nil)
    }

    private func ended() {
        let session = self.session
        self.session = nil
        session?.transportClosed()
    }
}

/// exec and attach over SPDY (kubelet's remote-command protocol `v4.channel.k8s.io`): the client
/// opens one stream per `streamType` (error, stdin, stdout, stderr, resize); the command starts once every stream
/// the query asked for is open. When it ends: the `Status` on the error stream, every stream finished, and the
/// connection closed.
final class SPDYExecApplication: SPDYStreamApplication {
    private let request: ExecRequest
    private var streams: [String: UInt32] = [:]
    private var process: FakeProcess?
    private var finished = false

    init(request: ExecRequest) {
        self.request = request
    }

    private var expectedStreams: Set<String> {
        var expected: Set<String> = ["error"]
        if request.stdin { expected.insert("stdin") }
        if request.stdout { expected.insert("stdout") }
        if request.stderr && !request.tty { expected.insert("stderr") }
        if request.tty { expected.insert("resize") }
        return expected
    }

    func streamOpened(_ id: UInt32, headers: SPDYHeaderBlock, session: SPDYSession) {
        guard let type = headers["streamtype"] else {
            session.reset(id)
            return
        }
        streams[type] = id
        guard process == nil, expectedStreams.isSubset(of: Set(streams.keys)) else { return }
        let process = FakeProcess(
            command: request.command, pod: request.pod, hasStdin: request.stdin,
            output: { [weak self, unowned session] stream, bytes in
                guard let self, let id = self.streams[stream == .stdout ? "stdout" : "stderr"] else { return }
                session.write(id, bytes)
            },
            exited: { [weak self, unowned session] code in self?.exited(code, session: session) })
        self.process = process
        process.start()
    }

    func streamData(_ id: UInt32, _ bytes: [UInt8], session: SPDYSession) {
        if id == streams["stdin"] { process?.stdin(bytes) }
    }

    func streamFinished(_ id: UInt32, session: SPDYSession) {
        if id == streams["stdin"] { process?.stdinClosed() }
    }

    func streamReset(_ id: UInt32, session: SPDYSession) {
        if id == streams["stdin"] { process?.stdinClosed() }
    }

    func sessionEnded() {
        finished = true
        process = nil
    }

    private func exited(_ code: Int, session: SPDYSession) {
        guard !finished else { return }
        finished = true
        if let error = streams["error"] {
            session.write(error, Array(FakeProcess.status(exitCode: code, command: request.command).utf8), fin: true)
        }
        for id in streams.values { session.finish(id) }
        session.close()
    }
}
