import NIOCore

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
