import NIOCore
import NIOHTTP1

/// Accepts HTTP/1.1 `Upgrade: websocket` and `Upgrade: SPDY/3.1` (what exec, attach and port-forward use) and then
/// speaks a tiny test protocol over the raw stream: one greeting line naming the protocol, the path and how the
/// caller authenticated, then an echo of every byte received. A proxy in between must be a transparent byte tunnel
/// for the echo to come back intact.
struct TunnelUpgrader: HTTPServerProtocolUpgrader, Sendable {
    let supportedProtocol: String
    let requiredUpgradeHeaders: [String] = []
    let core: ServerCore
    let connection: ConnectionInfo

    func buildUpgradeResponse(
        channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        var headers = initialResponseHeaders
        if upgradeRequest.headers["sec-websocket-protocol"].first != nil {
            headers.add(name: "Sec-WebSocket-Protocol", value: upgradeRequest.headers["sec-websocket-protocol"].first!)
        }
        return channel.eventLoop.makeSucceededFuture(headers)
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        var auth = "none"
        if let header = upgradeRequest.headers["authorization"].first,
            let method = core.authenticate(authorization: header)
        {
            auth = method
        } else if connection.hasClientCertificate {
            auth = "certificate"
        }
        let greeting = "standin tunnel: protocol=\(supportedProtocol) path=\(upgradeRequest.uri) auth=\(auth)\n"
        // Right behind the upgrade handler, so the HTTP request handler further down never sees raw bytes.
        do {
            // A tunnel passes half-closes on: after the client's close_notify, keep writing the echo.
            try context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
            try context.pipeline.syncOperations.addHandler(
                TunnelEchoHandler(greeting: greeting), position: .after(context.handler))
            return context.eventLoop.makeSucceededFuture(())
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }
}

/// Writes the greeting once active in the pipeline, then echoes bytes back.
final class TunnelEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let greeting: String
    /// Completes when everything echoed so far is written (NIO fails writes still pending at an output close).
    private var lastWrite: EventLoopFuture<Void>?

    init(greeting: String) { self.greeting = greeting }

    func handlerAdded(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: greeting)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastWrite = context.writeAndFlush(data)
    }

    /// The client half-closed: finish the echo, then close our side.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            let close = { context.close(mode: .output, promise: nil) }
            if let lastWrite {
                lastWrite.assumeIsolated().whenComplete { _ in close() }
            } else {
                close()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
