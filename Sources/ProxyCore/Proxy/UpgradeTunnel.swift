/// A protocol upgrade (WebSocket, SPDY/3.1: exec, attach, port-forward) on its own HTTP/1.1 TLS connection.
///
/// As kubectl does: a fresh connection per upgrade offering ALPN `http/1.1` only, with the same TLS identity and
/// credentials; the request head is written raw; a `101` is relayed and the two sockets become a byte tunnel with
/// no idle timeout; a non-101 answer of 400 or more is relayed as is; any other answer becomes a 502 `Status`.
/// Confined to the client connection's loop.
final class UpgradeTunnel: UpstreamTransportDelegate {
    /// Bytes buffered towards either side before the other side is paused.
    static let highWater = 256 * 1024
    static let lowWater = 64 * 1024

    private unowned let connection: ClientConnection
    private var transport: UpstreamTransport
    private let tlsContext: TLSContext?
    private let proxy: UpstreamProxy?
    /// Several apiservers: how the server is chosen, and another one if this one cannot be reached.
    private let route: TunnelRoute?
    private var transportConnected = false
    private let requestHead: [UInt8]
    private var pendingToUpstream: [[UInt8]]
    private var parser: HTTP1ResponseParser?
    private var tunneling = false
    private var relayingFailure = false
    private var finished = false
    private var upstreamPaused = false
    private let onResponse: (Int) -> Void
    private let metrics: LoopMetrics
    /// Counted in `proxyd_upgrade_tunnels` (from the 101 until either side ends it).
    private var countedOpen = false

    /// - Parameters:
    ///   - head: the request head to send (already rewritten, credentials added, `Host` first).
    ///   - early: bytes the client sent after its head (they belong to the tunnel).
    ///   - onResponse: called once with the upstream status (for the access log).
    ///   - route: with several apiservers, picks the server (`target` is then only a placeholder).
    init(connection: ClientConnection, target: UpstreamTarget, tlsContext: TLSContext?, proxy: UpstreamProxy?,
         method: String, head: [UInt8], early: [UInt8], route: TunnelRoute? = nil,
         onResponse: @escaping (Int) -> Void) {
        self.connection = connection
        self.tlsContext = tlsContext
        self.proxy = proxy
        self.route = route
        metrics = connection.context.metrics
        transport = Self.makeTransport(connection: connection, target: target, tlsContext: tlsContext, proxy: proxy)
        requestHead = head
        pendingToUpstream = early.isEmpty ? [] : [early]
        parser = HTTP1ResponseParser(requestMethod: method)
        self.onResponse = onResponse
        transport.delegate = self
    }

    private static func makeTransport(
        connection: ClientConnection, target: UpstreamTarget, tlsContext: TLSContext?, proxy: UpstreamProxy?
    ) -> UpstreamTransport {
        UpstreamTransport(
            loop: connection.context.loop, target: target, tlsContext: tlsContext,
            proxy: proxy, keepAlive: connection.context.shared.upgradeKeepAlive)
    }

    func start() {
        guard let route else {
            transport.connect()
            return
        }
        route.next(after: nil) { [weak self] in self?.dial($0) }
    }

    /// Connects to the server the route picked, or answers its failure.
    private func dial(_ choice: Result<UpstreamTarget, UpstreamFailure>) {
        guard !finished else { return }
        switch choice {
        case .success(let target):
            transport = Self.makeTransport(connection: connection, target: target, tlsContext: tlsContext, proxy: proxy)
            transport.delegate = self
            transport.connect()
        case .failure(let failure):
            finished = true
            connection.upgradeFailed(failure)
        }
    }

    // MARK: client → upstream

    /// Raw bytes from the client after its request head.
    func clientSent(_ bytes: ByteBuffer) {
        guard !finished else { return }
        if tunneling {
            metrics.values.tunnelBytesToUpstream += bytes.readableBytes
            transport.write(bytes)
            if transport.bufferedWriteBytes > Self.highWater { connection.setTunnelBackpressure(true) }
        } else {
            pendingToUpstream.append(bytes.readableBytesArray)
        }
    }

    /// The client half-closed: pass it on (TLS close_notify + FIN) and keep relaying what the apiserver still sends
    /// until it ends its side too.
    func clientEnded() {
        guard !finished else { return }
        if tunneling {
            transport.closeWrite()
        } else {
            cancel()
        }
    }

    /// The client socket drained: resume reading the upstream.
    func clientDrained() {
        if upstreamPaused && connection.bufferedWriteBytes <= Self.lowWater {
            upstreamPaused = false
            transport.resumeReading()
        }
    }

    func cancel() {
        uncount()
        guard !finished else { return }
        finished = true
        transport.close()
    }

    private func uncount() {
        guard countedOpen else { return }
        countedOpen = false
        metrics.values.upgradeTunnels -= 1
    }

    // MARK: UpstreamTransportDelegate

    func transportDidConnect(_ transport: UpstreamTransport, alpn: String?) {
        transportConnected = true
        route?.connected()
        transport.write(requestHead)
        for chunk in pendingToUpstream { transport.write(chunk) }
        pendingToUpstream = []
    }

    func transport(_ transport: UpstreamTransport, didRead plaintext: ByteBuffer) {
        guard !finished else { return }
        if tunneling {
            forwardToClient(plaintext)
            return
        }
        guard var parser else { return }
        do {
            let events = try parser.feed(plaintext.readableBytesArray[...])
            self.parser = parser
            for event in events { try handle(event) }
        } catch {
            fail(.badGateway("invalid upgrade response from the apiserver: \(error)"))
        }
    }

    private func handle(_ event: HTTP1ResponseEvent) throws {
        switch event {
        case .head(let head):
            onResponse(head.status)
            if head.status == 101 {
                tunneling = true
                countedOpen = true
                metrics.values.upgradeTunnels += 1
                connection.write(HTTP1Serializer.responseHead(head))
                let early = parser?.takeRemainingBytes() ?? []
                parser = nil
                if !early.isEmpty { forwardToClient(ByteBuffer(bytes: early)) }
                connection.flushOutput()
            } else if head.status >= 400 {
                // Relay the refusal (status, headers, body), then close, as kubectl does.
                relayingFailure = true
                var headers = HeaderRewriter.clientResponseHeaders(head.headers)
                headers.replaceOrAdd(name: "Connection", value: "close")
                connection.write(
                    HTTP1Serializer.responseHead(HTTPResponseHead(status: head.status, version: .http1_1, headers: headers)))
            } else {
                fail(.badGateway("invalid upgrade response: status code \(head.status)"))
            }
        case .body(let slice):
            if relayingFailure { connection.write(Array(slice)) }
        case .end:
            if relayingFailure { finishRelayedFailure() }
        }
    }

    private func forwardToClient(_ bytes: ByteBuffer) {
        metrics.values.tunnelBytesToClient += bytes.readableBytes
        connection.write(bytes)
        if !upstreamPaused && connection.bufferedWriteBytes > Self.highWater {
            upstreamPaused = true
            transport.pauseReading()
        }
    }

    func transportDidDrainWrites(_ transport: UpstreamTransport) {
        if transport.bufferedWriteBytes <= Self.lowWater { connection.setTunnelBackpressure(false) }
    }

    func transportDidClose(_ transport: UpstreamTransport, failure: UpstreamFailure?) {
        if !transportConnected, !finished, let route, let failure {
            // Nothing was sent (the head goes out once connected): try another server.
            metrics.values.upstreamErrors[(transport.failureKind ?? .protocol).rawValue] += 1
            route.next(after: failure) { [weak self] in self?.dial($0) }
            return
        }
        if failure != nil { metrics.values.upstreamErrors[(transport.failureKind ?? .protocol).rawValue] += 1 }
        uncount()
        if relayingFailure, !finished, var parser {
            // A refusal without a length ends with the connection.
            if let events = try? parser.finish() {
                self.parser = parser
                for event in events { try? handle(event) }
            }
            finishRelayedFailure()
            return
        }
        guard !finished else { return }
        finished = true
        if tunneling {
            // The apiserver ended the stream: the client sees the end of the tunnel.
            connection.tunnelEnded(self)
        } else {
            connection.upgradeFailed(failure ?? .badGateway("the apiserver closed the connection before answering the upgrade"))
        }
    }

    private func fail(_ failure: UpstreamFailure) {
        guard !finished else { return }
        finished = true
        transport.close()
        connection.upgradeFailed(failure)
    }

    private func finishRelayedFailure() {
        guard !finished else { return }
        finished = true
        transport.close()
        connection.tunnelEnded(self)
    }
}
