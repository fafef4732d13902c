import NIOCore
import NIOWebSocket

/// What runs on a server-side WebSocket connection (RFC 6455; framing and masking by NIOWebSocket).
protocol WebSocketApplication: AnyObject {
    func start(_ connection: WebSocketConnection)
    /// Payload of one data frame; `startsMessage` is false for continuation frames.
    func received(_ payload: [UInt8], startsMessage: Bool)
    /// One data frame (text, binary or continuation); by default its payload goes to `received(_:startsMessage:)`.
    func received(frame opcode: WebSocketOpcode, fin: Bool, payload: [UInt8])
    /// The connection is gone.
    func ended()
}

extension WebSocketApplication {
    func received(frame opcode: WebSocketOpcode, fin: Bool, payload: [UInt8]) {
        received(payload, startsMessage: opcode != .continuation)
    }
}

/// The WebSocket side of an upgraded stand-in connection: answers pings, completes the close handshake and hands
/// data frames to its application. Sits behind NIOWebSocket's frame decoder and encoder.
final class WebSocketConnection: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let application: any WebSocketApplication
    private var context: ChannelHandlerContext?
    private var lastWrite: EventLoopFuture<Void>?
    private var closeSent = false
    private var ended = false

    init(application: any WebSocketApplication) {
        self.application = application
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        application.start(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end()
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text, .continuation:
            application.received(frame: frame.opcode, fin: frame.fin, payload: Array(buffer: frame.unmaskedData))
        case .ping:
            write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
        case .connectionClose:
            // The client closes: echo its status code, then end the connection.
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? 1000
            close(code: code)
        default:
            break
        }
    }

    // MARK: Sending

    /// One binary message.
    func sendBinary(_ bytes: [UInt8]) {
        send(opcode: .binary, fin: true, payload: bytes)
    }

    /// One data frame as given (an echo sends each frame back as it came).
    func send(opcode: WebSocketOpcode, fin: Bool, payload: [UInt8]) {
        guard let context, !closeSent else { return }
        write(WebSocketFrame(fin: fin, opcode: opcode, data: context.channel.allocator.buffer(bytes: payload)))
    }

    /// Sends a close frame (after everything written so far), then closes the connection.
    func close(code: UInt16 = 1000) {
        guard let context, !closeSent else { return }
        var data = context.channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        write(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
        closeSent = true
        lastWrite?.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func write(_ frame: WebSocketFrame) {
        guard let context, !closeSent else { return }
        lastWrite = context.writeAndFlush(wrapOutboundOut(frame))
    }

    private func end() {
        guard !ended else { return }
        ended = true
        application.ended()
    }
}

/// Kubernetes remote-command channels over WebSocket (`v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary
/// message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a v1 `Status` when the command
/// ends), 4 resize — and in v5, 255 carries "close": `[255, channel]` half-closes that channel (kubectl sends it
/// for stdin at EOF). When the command ends: the status on channel 3, then a normal close (1000), which is what
/// ends kubectl's stdout and stderr.
final class WebSocketExecApplication: WebSocketApplication {
    private let request: ExecRequest
    private let version: Int
    private var connection: WebSocketConnection?
    private var process: FakeProcess?
    private var messageChannel: UInt8?
    private var finished = false

    init(request: ExecRequest, version: Int) {
        self.request = request
        self.version = version
    }

    func start(_ connection: WebSocketConnection) {
        self.connection = connection
        let process = FakeProcess(
            command: request.command, pod: request.pod, hasStdin: request.stdin,
            output: { [weak self] stream, bytes in self?.output(stream, bytes) },
            exited: { [weak self] code in self?.exited(code) })
        self.process = process
        process.start()
    }

    func received(_ payload: [UInt8], startsMessage: Bool) {
        var payload = payload[...]
        if startsMessage {
            guard let channel = payload.popFirst() else { return }
            messageChannel = channel
        }
        switch messageChannel {
        case 0:
            process?.stdin(Array(payload))
        case 255 where version >= 5:
            if payload.first == 0 { process?.stdinClosed() }
        default:
            break  // resize, or nothing the fake process reads
        }
    }

    func ended() {
        finished = true
        process = nil
        connection = nil
    }

    private func output(_ stream: FakeProcess.Output, _ bytes: [UInt8]) {
        switch stream {
        case .stdout where request.stdout:
            connection?.sendBinary([1] + bytes)
        case .stderr where request.stderr:
            connection?.sendBinary([2] + bytes)
        default:
            break
        }
    }

    private func exited(_ code: Int) {
        guard !finished else { return }
        finished = true
        connection?.sendBinary([3] + Array(FakeProcess.status(exitCode: code, command: request.command).utf8))
        connection?.close()
    }
}

/// SPDY/3.1 tunnelled in binary WebSocket messages (`SPDY/3.1+portforward.k8s.io`, kubectl's port-forward since
/// 1.31): message boundaries mean nothing, the payloads form the SPDY byte stream in each direction.
final class WebSocketSPDYTunnel: WebSocketApplication {
    private let makeApplication: () -> any SPDYStreamApplication
    private var session: SPDYSession?

    init(application: @escaping () -> any SPDYStreamApplication) {
        makeApplication = application
    }

    func start(_ connection: WebSocketConnection) {
        session = try? SPDYSession(
            application: makeApplication(),
            send: { [weak connection] bytes in connection?.sendBinary(bytes) },
            close: { [weak connection] in connection?.close() })
        if session == nil { connection.close(code: 1011) }
    }

    func received(_ payload: [UInt8], startsMessage: Bool) {
        session?.receive(payload)
    }

    func ended() {
        session?.transportClosed()
        session = nil
    }
}

/// Sends every data frame back as it came (the demo dashboard's `/ws`).
final class WebSocketEchoApplication: WebSocketApplication {
    private weak var connection: WebSocketConnection?

    func start(_ connection: WebSocketConnection) {
        self.connection = connection
    }

    func received(_ payload: [UInt8], startsMessage: Bool) {}

    func received(frame opcode: WebSocketOpcode, fin: Bool, payload: [UInt8]) {
        connection?.send(opcode: opcode, fin: fin, payload: payload)
    }

    func ended() {
        connection = nil
    }
}
