import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One proxied request to a loopback backend over HTTP/1.1 (a fresh connection per request), with the apiserver's
/// response handling: hop-by-hop and CORS fields dropped, `Location` rewritten, `text/html` bodies buffered and
/// rewritten (`HTMLRewriter`), everything else streamed as it arrives. Confined to the event loop of the client
/// request's channel (the backend connection is opened on the same loop); results go to `events`.
final class BackendExchange {
    struct Events {
        var head: (HTTPResponseHead) -> Void
        var body: (ByteBuffer) -> Void
        var end: () -> Void
        /// `responseStarted` false: nothing was sent yet (answer 503); true: the response broke off.
        var failed: (_ message: String, _ responseStarted: Bool) -> Void
    }

    /// Larger HTML bodies are refused rather than buffered without bound.
    static let htmlLimit = 16 << 20

    private enum Mode {
        case waiting
        case streaming
        case bufferingHTML(HTTPResponseHead, ByteBuffer)
        case finished
    }

    private let eventLoop: any EventLoop
    private let backend: ProxyBackend
    private let request: HTTPRequestHead
    private let body: ByteBuffer?
    private let rewriter: ProxyURLRewriter
    private let events: Events
    private var channel: (any Channel)?
    private var mode = Mode.waiting

    init(
        eventLoop: any EventLoop, backend: ProxyBackend, request: HTTPRequestHead, body: ByteBuffer?,
        rewriter: ProxyURLRewriter, events: Events
    ) {
        self.eventLoop = eventLoop
        self.backend = backend
        self.request = request
        self.body = body
        self.rewriter = rewriter
        self.events = events
    }

    func start(tlsContext: NIOSSLContext?) {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let hostPort = backend.hostPort
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext {
                        try sync.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: nil))
                    }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(BackendResponseHandler(exchange: bound))
                }
            }
            .connect(host: backend.host, port: backend.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    bound.value.connected(channel)
                case .failure(let error):
                    bound.value.fail("error trying to reach service: dial tcp \(hostPort): \(Self.describe(error))")
                }
            }
    }

    /// Stops the exchange (the client went away, or the response is complete): closes the backend connection and
    /// reports nothing more.
    func cancel() {
        mode = .finished
        channel?.close(promise: nil)
        channel = nil
    }

    /// Backpressure from the client side: stop (or resume) reading the backend.
    func setReading(_ enabled: Bool) {
        channel?.setOption(.autoRead, value: enabled).whenFailure { _ in }
    }

    private func connected(_ channel: any Channel) {
        guard case .waiting = mode else {
            channel.close(promise: nil)
            return
        }
        self.channel = channel
        channel.write(HTTPClientRequestPart.head(request), promise: nil)
        if let body, body.readableBytes > 0 {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    // MARK: From the backend connection

    fileprivate func received(_ part: HTTPClientResponsePart) {
        switch (part, mode) {
        case (.head(let head), .waiting):
            if head.status == .continue { return }  // an interim answer to Expect: 100-continue
            let headers = ProxyHeaders.clientResponse(head.headers, rewriter: rewriter)
            let out = HTTPResponseHead(version: head.version, status: head.status, headers: headers)
            if request.method != .HEAD, ProxyHeaders.isRewritableHTML(head.headers) {
                mode = .bufferingHTML(out, ByteBufferAllocator().buffer(capacity: 16 << 10))
            } else {
                mode = .streaming
                events.head(out)
            }
        case (.body(var buffer), .bufferingHTML(let head, var collected)):
            guard collected.readableBytes + buffer.readableBytes <= Self.htmlLimit else {
                fail("the backend's HTML response is larger than the stand-in rewrites (\(Self.htmlLimit) bytes)")
                return
            }
            collected.writeBuffer(&buffer)
            mode = .bufferingHTML(head, collected)
        case (.body(let buffer), .streaming):
            events.body(buffer)
        case (.end, .bufferingHTML(var head, let collected)):
            let rewritten = HTMLRewriter.rewrite(Array(buffer: collected), rewriter.rewrite)
            head.headers.replaceOrAdd(name: "Content-Length", value: String(rewritten.count))
            mode = .finished
            events.head(head)
            events.body(ByteBufferAllocator().buffer(bytes: rewritten))
            events.end()
            cancel()
        case (.end, .streaming):
            mode = .finished
            events.end()
            cancel()
        default:
            break
        }
    }

    fileprivate func fail(_ message: String) {
        let started: Bool
        switch mode {
        case .finished: return
        case .streaming: started = true
        case .waiting, .bufferingHTML: started = false
        }
        mode = .finished
        channel?.close(promise: nil)
        channel = nil
        events.failed(message, started)
    }

    private static func describe(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error)
        }
        if let io = error as? IOError {
            return "connect: " + String(cString: strerror(io.errnoCode)).lowercased()
        }
        return "\(error)"
    }
}

/// The backend connection's end of a `BackendExchange`.
private final class BackendResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let exchange: NIOLoopBound<BackendExchange>

    init(exchange: NIOLoopBound<BackendExchange>) {
        self.exchange = exchange
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        exchange.value.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange.value.fail("the backend closed the connection before the response was complete")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        exchange.value.fail("error reading from the backend: \(error)")
        context.close(promise: nil)
    }
}
