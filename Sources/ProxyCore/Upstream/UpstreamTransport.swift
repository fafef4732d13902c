import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Receives a transport's events on its loop.
protocol UpstreamTransportDelegate: AnyObject {
    /// TCP connected and (for https) the TLS handshake completed; `alpn` is the negotiated protocol.
    func transportDidConnect(_ transport: UpstreamTransport, alpn: String?)
    /// Plaintext from the apiserver. The receiver may keep the buffer or slices of it (they share its storage).
    func transport(_ transport: UpstreamTransport, didRead plaintext: ByteBuffer)
    /// The socket's write queue drained: more output may be produced.
    func transportDidDrainWrites(_ transport: UpstreamTransport)
    /// The transport is closed. `failure` is `nil` for a clean EOF or a close we asked for.
    func transportDidClose(_ transport: UpstreamTransport, failure: UpstreamFailure?)
}

/// How upstream connections go through the cluster's `proxy-url`: the proxy, and for an `https` proxy the TLS
/// context used towards it (the cluster's CA, client certificate, `tls-server-name` and insecure flag, as Go's
/// `Transport` clones its `TLSClientConfig` for the proxy; ALPN `http/1.1` only, since CONNECT is HTTP/1.1).
struct UpstreamProxy: Sendable {
    let endpoint: ProxyEndpoint
    let tlsContext: TLSContext?

    /// - Throws: `TLSError` when the TLS context for an `https` proxy cannot be built.
    init(endpoint: ProxyEndpoint, tls: TLSConfiguration) throws(TLSError) {
        self.endpoint = endpoint
        if endpoint.kind == .https {
            var configuration = tls
            configuration.alpn = ["http/1.1"]
            tlsContext = try TLSContext(configuration: configuration)
        } else {
            tlsContext = nil
        }
    }
}

/// TCP (+ TLS through `TLSEngine` over memory BIOs) to the apiserver, optionally through a `proxy-url` proxy.
/// Confined to `loop`.
///
/// TLS never touches the fd: ciphertext read from the socket is fed to the engine, plaintext is drained until
/// the engine wants more input (so no record stays buffered inside OpenSSL), and ciphertext the engine produces
/// is written to the socket.
///
/// With a proxy, layers stack on the one socket, each fed by the one below:
///
///     socket ⇄ [TLS to an https proxy] ⇄ [CONNECT / SOCKS5 handshake, then a byte pipe] ⇄ [TLS to the apiserver]
///
/// The proxy stages (TCP connect to the proxy, TLS with it, the tunnel handshake) share one deadline, the connect
/// timeout; the apiserver's TLS handshake then has its usual one. Bytes the proxy sent after its answer go on to
/// the next layer.
final class UpstreamTransport: StreamConnectionDelegate {
    static let connectTimeout: Duration = .seconds(30)  // client-go's dialer
    static let handshakeTimeout: Duration = .seconds(10)  // client-go's TLSHandshakeTimeout
    static let readChunk = 64 * 1024

    let loop: EventLoop
    let target: UpstreamTarget
    private let tlsContext: TLSContext?
    private let proxy: UpstreamProxy?
    weak var delegate: (any UpstreamTransportDelegate)?

    private var socket: StreamConnection?
    /// TLS with an `https` proxy (outermost layer).
    private var proxyTLS: TLSEngine?
    /// The tunnel handshake while it runs; `nil` without a proxy and once the tunnel is open.
    private var proxyHandshake: ProxyHandshake?
    /// TLS with the apiserver.
    private var tls: TLSEngine?
    private var handshakeTimer: LoopTimer?
    private var connected = false
    private var closed = false
    private var pendingFailure: UpstreamFailure?
    /// Set once TCP to the apiserver is up (or, with a proxy, once its tunnel is open).
    private var tunnelOpen = false
    /// What failed, for `proxyd_upstream_connection_errors_total`; set with the failure that closed the transport.
    private(set) var failureKind: UpstreamErrorKind?

    /// TCP keep-alive period for this connection (`--keepalive`, upgrades only), `nil` for the system default.
    private let keepAlive: Duration?

    init(loop: EventLoop, target: UpstreamTarget, tlsContext: TLSContext?, proxy: UpstreamProxy? = nil,
         keepAlive: Duration? = nil) {
        self.loop = loop
        self.target = target
        self.tlsContext = tlsContext
        self.proxy = proxy
        self.keepAlive = keepAlive
    }

    func connect() {
        let loop = self.loop
        let box = LoopBound(self)
        let host = proxy?.endpoint.host ?? target.host
        let port = proxy?.endpoint.port ?? target.port
        TCPConnector.connect(host: host, port: port, loop: loop, timeout: Self.connectTimeout) { result in
            loop.assertInLoop()
            box.value.didConnectTCP(result)
        }
    }

    private func didConnectTCP(_ result: Result<Int32, IOError>) {
        guard !closed else {
            if case .success(let fd) = result { try? Posix.close(fd: fd) }
            return
        }
        switch result {
        case .failure(let error):
            if let proxy {
                finish(failure: Self.classifyProxyConnectError(error, proxy: proxy.endpoint))
            } else {
                finish(failure: Self.classifyConnectError(error, target: target))
            }
        case .success(let fd):
            if let keepAlive { try? setTCPKeepAlive(fd: fd, idle: keepAlive) }
            let socket = StreamConnection(fd: fd, loop: loop)
            socket.delegate = self
            self.socket = socket
            socket.start()
            if let proxy {
                startProxy(proxy)
            } else {
                tunnelOpened()
            }
        }
    }

    static func classifyConnectError(_ error: IOError, target: UpstreamTarget) -> UpstreamFailure {
        let what = "dial tcp \(target.authority): \(error)"
        if error.errno == ETIMEDOUT { return .timeout(what) }
        return .unavailable(what)
    }

    /// A proxy that cannot be reached is a bad gateway (502), not an unavailable apiserver.
    static func classifyProxyConnectError(_ error: IOError, proxy: ProxyEndpoint) -> UpstreamFailure {
        let what = "proxyconnect tcp: dial tcp \(proxy.authority): \(error)"
        if error.errno == ETIMEDOUT { return .timeout(what) }
        return .badGateway(what)
    }

    // MARK: proxy stages

    private func startProxy(_ proxy: UpstreamProxy) {
        let box = LoopBound(self)
        let authority = proxy.endpoint.authority
        handshakeTimer = loop.scheduleTimer(after: Self.connectTimeout) {
            box.value.fail(.timeout("proxyconnect tcp \(authority): the proxy did not open the tunnel in time"))
        }
        if let context = proxy.tlsContext {
            do {
                let engine = try TLSEngine(context: context, host: proxy.endpoint.host)
                proxyTLS = engine
                guard handleProxyTLS(engine.startHandshake()) else { return }
                flushProxyCiphertext()
            } catch {
                fail(.badGateway("proxyconnect tcp \(authority): TLS setup failed: \(error)"))
            }
        } else {
            startTunnelHandshake(proxy)
        }
    }

    /// Handles a result of the proxy TLS handshake; returns false if the transport failed.
    private func handleProxyTLS(_ result: TLSResult) -> Bool {
        guard let proxy, let proxyTLS else { return false }
        switch result {
        case .complete, .needsInput:
            if proxyHandshake == nil, tls == nil, !connected, proxyTLS.isHandshakeComplete {
                startTunnelHandshake(proxy)
            }
            return !closed
        case .closed:
            fail(.badGateway("proxyconnect tcp \(proxy.endpoint.authority): TLS connection closed during handshake"))
            return false
        case .failed(let error):
            fail(.badGateway("proxyconnect tcp \(proxy.endpoint.authority): TLS: \(error)"))
            return false
        }
    }

    private func startTunnelHandshake(_ proxy: UpstreamProxy) {
        var handshake = ProxyHandshake(endpoint: proxy.endpoint, targetHost: target.host, targetPort: target.port)
        let first = handshake.start()
        proxyHandshake = handshake
        handleProxyProgress(first)
    }

    private func handleProxyProgress(_ progress: ProxyHandshake.Progress) {
        switch progress {
        case .needsInput(let send):
            if !send.isEmpty { writeBelowServerTLS(send) }
        case .failed(let why):
            proxyHandshake = nil
            fail(.badGateway(why))
        case .established(let leftover):
            proxyHandshake = nil
            handshakeTimer?.cancel()
            handshakeTimer = nil
            tunnelOpened()
            if !leftover.isEmpty, !closed { receiveFromTunnel(ByteBuffer(bytes: leftover)) }
        }
    }

    // MARK: apiserver stage

    /// The byte path to the apiserver is open (TCP connected, or the proxy tunnel established).
    private func tunnelOpened() {
        tunnelOpen = true
        guard let tlsContext else {
            connected = true
            delegate?.transportDidConnect(self, alpn: nil)
            return
        }
        do {
            let engine = try TLSEngine(context: tlsContext, host: target.host)
            tls = engine
            let box = LoopBound(self)
            handshakeTimer = loop.scheduleTimer(after: Self.handshakeTimeout) {
                box.value.fail(.timeout("TLS handshake with \(box.value.target.authority) timed out"))
            }
            handleTLS(engine.startHandshake())
            flushCiphertext()
        } catch {
            fail(.badGateway("TLS setup failed: \(error)"))
        }
    }

    /// Handles a TLS result during the handshake; returns false if the transport failed.
    @discardableResult
    private func handleTLS(_ result: TLSResult) -> Bool {
        switch result {
        case .complete, .needsInput:
            if !connected, let tls, tls.isHandshakeComplete {
                connected = true
                handshakeTimer?.cancel()
                handshakeTimer = nil
                delegate?.transportDidConnect(self, alpn: tls.negotiatedALPN)
            }
            return !closed
        case .closed:
            finish(failure: connected ? nil : .badGateway("TLS connection closed during handshake"))
            return false
        case .failed(let error):
            fail(.badGateway("TLS: \(error)"))
            return false
        }
    }

    /// Writes plaintext (application data) to the apiserver.
    func write(_ bytes: [UInt8]) {
        guard !closed, socket != nil, !bytes.isEmpty else { return }
        if let tls {
            if case .failed(let error) = tls.writePlaintext(bytes[...]) {
                fail(.badGateway("TLS: \(error)"), kind: .tls)
                return
            }
            flushCiphertext()
        } else {
            writeBelowServerTLS(ByteBuffer(bytes: bytes))
        }
    }

    /// Writes plaintext (application data) to the apiserver, encrypting straight from the buffer.
    func write(_ bytes: ByteBuffer) {
        guard !closed, socket != nil, !bytes.isEmpty else { return }
        if let tls {
            if case .failed(let error) = tls.writePlaintext(bytes) {
                fail(.badGateway("TLS: \(error)"), kind: .tls)
                return
            }
            flushCiphertext()
        } else {
            writeBelowServerTLS(bytes)
        }
    }

    var bufferedWriteBytes: Int { socket?.bufferedWriteBytes ?? 0 }

    func pauseReading() { socket?.pauseReading() }
    func resumeReading() { socket?.resumeReading() }

    /// Sends what the apiserver TLS engine produced.
    private func flushCiphertext() {
        guard let tls else { return }
        let out = tls.takeCiphertextBuffer()
        if !out.isEmpty { writeBelowServerTLS(out) }
    }

    /// Writes bytes into the tunnel: through the proxy's TLS when there is one, else straight to the socket.
    private func writeBelowServerTLS(_ bytes: [UInt8]) {
        writeBelowServerTLS(ByteBuffer(bytes: bytes))
    }

    private func writeBelowServerTLS(_ bytes: ByteBuffer) {
        guard let socket else { return }
        if let proxyTLS {
            if case .failed(let error) = proxyTLS.writePlaintext(bytes) {
                fail(.badGateway("proxy TLS: \(error)"))
                return
            }
            flushProxyCiphertext()
        } else {
            socket.write(bytes)
        }
    }

    private func flushProxyCiphertext() {
        guard let proxyTLS, let socket else { return }
        let out = proxyTLS.takeCiphertextBuffer()
        if !out.isEmpty { socket.write(out) }
    }

    /// Half-close: no more data towards the apiserver (TLS close_notify, then TCP FIN), but keep reading until it
    /// ends its side. Used by upgrade tunnels to pass a client's half-close on.
    func closeWrite() {
        guard !closed, let socket else { return }
        if connected, let tls {
            tls.shutdown()
            flushCiphertext()
        }
        if let proxyTLS {
            proxyTLS.shutdown()
            flushProxyCiphertext()
        }
        socket.shutdownWrite()
    }

    /// Closes after sending TLS close_notify, reporting no failure.
    func close() {
        guard !closed else { return }
        if connected, let tls {
            tls.shutdown()
            flushCiphertext()
        }
        if let proxyTLS, proxyTLS.isHandshakeComplete {
            proxyTLS.shutdown()
            flushProxyCiphertext()
        }
        finish(failure: nil)
    }

    /// Closes with `failure`. `kind` says what failed when the transport cannot tell by itself (an HTTP/2 PING that
    /// went unanswered); by default it follows the stage: connect or proxy tunnel, TLS handshake, or later.
    func fail(_ failure: UpstreamFailure, kind: UpstreamErrorKind? = nil) {
        if let kind, !closed { failureKind = kind }
        finish(failure: failure)
    }

    private func finish(failure: UpstreamFailure?) {
        guard !closed else { return }
        closed = true
        pendingFailure = failure
        if failure != nil, failureKind == nil {
            failureKind = !tunnelOpen ? .connect : !connected ? .tls : .protocol
        }
        handshakeTimer?.cancel()
        handshakeTimer = nil
        if let socket {
            socket.close()  // connectionDidClose reports to the delegate
        } else {
            reportClosed()
        }
    }

    private func reportClosed() {
        let failure = pendingFailure
        pendingFailure = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.transportDidClose(self, failure: failure)
    }

    // MARK: incoming bytes, layer by layer

    func connection(_ c: StreamConnection, didRead bytes: ByteBuffer) {
        guard !closed else { return }
        guard let proxyTLS else {
            receiveFromTunnel(bytes)
            return
        }
        proxyTLS.feed(ciphertext: bytes)
        if !proxyTLS.isHandshakeComplete {
            guard handleProxyTLS(proxyTLS.startHandshake()) else { return }
            flushProxyCiphertext()
            if !proxyTLS.isHandshakeComplete { return }
        }
        var plaintext = ByteBuffer()
        let result = proxyTLS.readPlaintext(into: &plaintext, max: Int.max)
        flushProxyCiphertext()
        if !plaintext.isEmpty { receiveFromTunnel(plaintext) }
        guard !closed else { return }
        switch result {
        case .complete, .needsInput: break
        case .closed: tunnelEnded()
        case .failed(let error): fail(.badGateway("proxy TLS: \(error)"))
        }
    }

    /// Bytes that came through the proxy layers (or straight from the socket without a proxy).
    private func receiveFromTunnel(_ bytes: ByteBuffer) {
        guard !closed else { return }
        if var handshake = proxyHandshake {
            let progress = handshake.receive(bytes.readableBytesArray[...])
            proxyHandshake = handshake
            handleProxyProgress(progress)
            return
        }
        guard let tls else {
            delegate?.transport(self, didRead: bytes)
            return
        }
        tls.feed(ciphertext: bytes)
        if !connected {
            guard handleTLS(tls.startHandshake()) else { return }
            flushCiphertext()
            if !connected { return }
        }
        // Decrypt into the loop's buffer of the last read if its receiver kept nothing of it.
        var plaintext = loop.takePlaintextBuffer()
        let result = tls.readPlaintext(into: &plaintext, max: Int.max)
        flushCiphertext()  // TLS 1.3 post-handshake messages, key updates
        if !plaintext.isEmpty {
            delegate?.transport(self, didRead: plaintext)
        }
        loop.recyclePlaintextBuffer(&plaintext)
        switch result {
        case .complete, .needsInput: break
        case .closed: finish(failure: nil)
        case .failed(let error): fail(.badGateway("TLS: \(error)"), kind: .tls)
        }
    }

    /// The peer ended the byte stream (TCP EOF, or close_notify from an https proxy).
    private func tunnelEnded() {
        if let proxyHandshake {
            finish(failure: .badGateway(proxyHandshake.closedByProxy()))
        } else if let proxy, !connected, tls == nil, proxyTLS?.isHandshakeComplete != true {
            finish(failure: .badGateway(
                "proxyconnect tcp \(proxy.endpoint.authority): the proxy closed the connection during the TLS handshake"))
        } else {
            finish(failure: connected ? nil : .badGateway("the apiserver closed the connection during the TLS handshake"))
        }
    }

    func connectionDidReadEOF(_ c: StreamConnection) {
        tunnelEnded()
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {
        guard !closed else { return }
        delegate?.transportDidDrainWrites(self)
    }

    func connection(_ c: StreamConnection, didFail error: IOError) {
        if let proxy, !connected {
            finish(failure: .badGateway("proxyconnect tcp \(proxy.endpoint.authority): \(error)"))
        } else {
            finish(failure: .badGateway("connection to \(target.authority) failed: \(error)"))
        }
    }

    func connectionDidClose(_ c: StreamConnection) {
        if !closed {
            closed = true
        }
        handshakeTimer?.cancel()
        handshakeTimer = nil
        socket = nil
        reportClosed()
    }
}

/// Carries a loop-confined reference through a `@Sendable` closure that runs on the same loop.
/// Only dereference `value` on the loop that created it.
struct LoopBound<T: AnyObject>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Same as `LoopBound` but weak.
struct WeakLoopBound<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}
