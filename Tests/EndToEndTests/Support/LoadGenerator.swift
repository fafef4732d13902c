import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `concurrency` HTTP/1.1 keep-alive clients (SwiftNIO), each sending `GET path` back to back to a loopback port,
/// recording when every request started and ended and how it went. A connection that breaks counts its request
/// as failed and is replaced.
final class LoadGenerator: @unchecked Sendable {
    struct Outcome: Sendable {
        var start: ContinuousClock.Instant
        var end: ContinuousClock.Instant
        var status: Int
        /// Why it failed (a status other than 200, or a broken connection); empty when it succeeded.
        var failure: String
    }

    let port: Int
    let path: String
    let concurrency: Int
    private let lock = NSLock()
    private var outcomes: [Outcome] = []
    private var running = false
    private var inFlight = 0
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    init(port: Int, path: String, concurrency: Int) {
        self.port = port
        self.path = path
        self.concurrency = concurrency
    }

    func start() {
        lock.withLock { running = true }
        for _ in 0..<concurrency { connect() }
    }

    /// Lets in-flight requests finish (up to `drain`), closes every connection, then returns every outcome.
    func stop(drain: Duration = .seconds(10)) async -> [Outcome] {
        lock.withLock { running = false }
        let deadline = ContinuousClock.now + drain
        while lock.withLock({ inFlight }) > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        try? await group.shutdownGracefully()
        return lock.withLock { outcomes }
    }

    var isRunning: Bool { lock.withLock { running } }

    func record(_ outcome: Outcome) {
        lock.withLock {
            outcomes.append(outcome)
            inFlight -= 1
        }
    }

    /// Counts a request about to be sent; false once stopped.
    func begin() -> Bool {
        lock.withLock {
            guard running else { return false }
            inFlight += 1
            return true
        }
    }

    var completed: Int { lock.withLock { outcomes.count } }

    private func connect() {
        guard isRunning else { return }
        let generator = self
        ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(LoadClientHandler(generator: generator))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .whenFailure { _ in
                // The proxy itself is never down in these tests; try again shortly.
                generator.group.next().scheduleTask(in: .milliseconds(50)) { generator.connect() }
            }
    }

    fileprivate func reconnect() { connect() }
}

private final class LoadClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let generator: LoadGenerator
    private var started: ContinuousClock.Instant?
    private var status = 0

    init(generator: LoadGenerator) { self.generator = generator }

    func channelActive(context: ChannelHandlerContext) {
        sendNext(context: context)
    }

    private func sendNext(context: ChannelHandlerContext) {
        guard generator.begin() else {
            context.close(promise: nil)
            return
        }
        started = .now
        status = 0
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: generator.path)
        head.headers.add(name: "Host", value: "localhost")
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body:
            break
        case .end:
            guard let started else { return }
            self.started = nil
            generator.record(.init(start: started, end: .now, status: status, failure: status == 200 ? "" : "status \(status)"))
            sendNext(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let started {
            self.started = nil
            generator.record(.init(start: started, end: .now, status: status, failure: "connection closed (status \(status))"))
        }
        generator.reconnect()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
