import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The upgrade path of the service/pod proxy (the apiserver's `tryUpgrade`): the request head goes to the loopback
/// backend over a new connection as it came (less `Authorization` and `Impersonate-*`, plus `X-Forwarded-For`), the
/// backend's response head is read; on `101 Switching Protocols` the stand-in answers 101 with the backend's fields
/// and the two connections become one byte tunnel (half-closes passed on).
enum BackendTunnel {
    /// The backend's answer to the upgrade request, on a connection whose bytes after the head are held back until
    /// `startRelaying(to:)`.
    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)]
        var channel: any Channel
        var reader: NIOLoopBound<BackendHeadReader>
    }

    static func open(
        backend: ProxyBackend, head: HTTPRequestHead, eventLoop: any EventLoop, tlsContext: NIOSSLContext?
    ) -> EventLoopFuture<Response> {
        let promise = eventLoop.makePromise(of: (Int, [(String, String)]).self)
        var text = "\(head.method.rawValue) \(head.uri) HTTP/1.1\r\n"
        for (name, value) in head.headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        let request = text
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext {
                        try sync.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: nil))
                    }
                    try sync.addHandler(BackendHeadReader(promise: promise))
                }
            }
            .connect(host: backend.host, port: backend.port)
            .flatMap { channel in
                channel.writeAndFlush(channel.allocator.buffer(string: request)).flatMap {
                    promise.futureResult
                }.flatMapThrowing { status, headers in
                    let reader = try channel.pipeline.syncOperations.handler(type: BackendHeadReader.self)
                    return Response(status: status, headers: headers, channel: channel, reader: NIOLoopBound(reader, eventLoop: eventLoop))
                }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    /// Joins an upgraded client channel (the handler at `context` is where the tunnel starts) to the backend.
    /// Runs on the shared event loop.
    static func join(clientContext context: ChannelHandlerContext, backend response: Response) throws {
        let (clientGlue, backendGlue) = TunnelGlue.pair()
        try context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
        try context.pipeline.syncOperations.addHandler(clientGlue, position: .after(context.handler))
        try response.channel.pipeline.syncOperations.addHandler(backendGlue)
        response.reader.value.startPassing()
    }
}

/// Reads the backend's response head from raw bytes (`HTTP/1.1 101 ...`, fields, blank line), fulfils the promise,
/// then holds any further bytes until `startPassing()` and from then on passes everything on.
final class BackendHeadReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var promise: EventLoopPromise<(Int, [(String, String)])>?
    private var buffered: ByteBuffer?
    private var passing = false
    private var context: ChannelHandlerContext?
    private static let headLimit = 64 << 10

    init(promise: EventLoopPromise<(Int, [(String, String)])>) {
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func startPassing() {
        passing = true
        if let context, let pending = buffered, pending.readableBytes > 0 {
            buffered = nil
            context.fireChannelRead(wrapInboundOut(pending))
            context.fireChannelReadComplete()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if passing {
            context.fireChannelRead(wrapInboundOut(bytes))
            return
        }
        if buffered == nil {
            buffered = bytes
        } else {
            buffered!.writeBuffer(&bytes)
        }
        guard let promise, let all = buffered else { return }
        let view = all.readableBytesView
        guard let end = Self.headEnd(view) else {
            if all.readableBytes > Self.headLimit { fail(context, "the backend's response head is too large") }
            return
        }
        let headText = String(decoding: view[view.startIndex..<end], as: UTF8.self)
        buffered = all.getSlice(at: all.readerIndex + (end - view.startIndex) + 4, length: view.endIndex - end - 4)
        guard let (status, headers) = Self.parseHead(headText) else {
            fail(context, "the backend's response head is malformed")
            return
        }
        self.promise = nil
        promise.succeed((status, headers))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if passing { context.fireChannelReadComplete() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ChannelError.eof)
        promise = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }

    private func fail(_ context: ChannelHandlerContext, _ message: String) {
        promise?.fail(BackendTunnelError(message: message))
        promise = nil
        context.close(promise: nil)
    }

    private static func headEnd(_ view: ByteBufferView) -> Int? {
        let marker: [UInt8] = [13, 10, 13, 10]
        var i = view.startIndex
        while i + 4 <= view.endIndex {
            if view[i] == 13, view[i..<(i + 4)].elementsEqual(marker) { return i }
            i += 1
        }
        return nil
    }

    /// `HTTP/1.x NNN reason` and `Name: value` lines.
    static func parseHead(_ text: String) -> (Int, [(String, String)])? {
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines[0].split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else { return nil }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            headers.append((String(line[..<colon]), String(value)))
        }
        return (status, headers)
    }
}

struct BackendTunnelError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// One side of a byte tunnel between two channels on the same event loop: what one reads, the other writes;
/// reading pauses while the other side cannot write; a half-close or close is passed across.
final class TunnelGlue: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: TunnelGlue?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    static func pair() -> (TunnelGlue, TunnelGlue) {
        let first = TunnelGlue()
        let second = TunnelGlue()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            partner?.context?.close(mode: .output, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.pendingRead {
            partner.pendingRead = false
            partner.context?.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? true {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
