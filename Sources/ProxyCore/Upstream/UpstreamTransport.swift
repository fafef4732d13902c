import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Receives a transport's events on its loop.
protocol UpstreamTransportDelegate: AnyObject {
    /// TCP connected and (for https) the TLS handshake completed; `alpn` is the negotiated protocol.
    func transportDidConnect(_ transport: UpstreamTransport, alpn: String?)
    func transport(_ transport: UpstreamTransport, didRead plaintext: [UInt8])
    /// The socket's write queue drained: more output may be produced.
    func transportDidDrainWrites(_ transport: UpstreamTransport)
    /// The transport is closed. `failure` is `nil` for a clean EOF or a close we asked for.
    func transportDidClose(_ transport: UpstreamTransport, failure: UpstreamFailure?)
}

/// TCP (+ TLS through `TLSEngine` over memory BIOs) to the apiserver. Confined to `loop`.
///
/// TLS never touches the fd: ciphertext read from the socket is fed to the engine, plaintext is drained until
/// the engine wants more input (so no record stays buffered inside OpenSSL), and ciphertext the engine produces
/// is written to the socket.
final class UpstreamTransport: StreamConnectionDelegate {
    static let connectTimeout: Duration = .seconds(30)  // client-go's dialer
    static let handshakeTimeout: Duration = .seconds(10)  // client-go's TLSHandshakeTimeout
    static let readChunk = 64 * 1024

    let loop: EventLoop
    let target: UpstreamTarget
    private let tlsContext: TLSContext?
    weak var delegate: (any UpstreamTransportDelegate)?

    private var socket: StreamConnection?
    private var tls: TLSEngine?
    private var handshakeTimer: LoopTimer?
    private var connected = false
    private var closed = false
    private var pendingFailure: UpstreamFailure?
    private var plaintextBuffer: [UInt8] = []

    /// TCP keep-alive period for this connection (`--keepalive`, upgrades only), `nil` for the system default.
    private let keepAlive: Duration?

    init(loop: EventLoop, target: UpstreamTarget, tlsContext: TLSContext?, keepAlive: Duration? = nil) {
        self.loop = loop
        self.target = target
        self.tlsContext = tlsContext
        self.keepAlive = keepAlive
    }

    func connect() {
        let loop = self.loop
        let box = LoopBound(self)
        TCPConnector.connect(host: target.host, port: target.port, loop: loop, timeout: Self.connectTimeout) { result in
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
            finish(failure: Self.classifyConnectError(error, target: target))
        case .success(let fd):
            if let keepAlive { try? setTCPKeepAlive(fd: fd, idle: keepAlive) }
            let socket = StreamConnection(fd: fd, loop: loop)
            socket.delegate = self
            self.socket = socket
            socket.start()
            if let tlsContext {
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
            } else {
                connected = true
                delegate?.transportDidConnect(self, alpn: nil)
            }
        }
    }

    static func classifyConnectError(_ error: IOError, target: UpstreamTarget) -> UpstreamFailure {
        let what = "dial tcp \(target.authority): \(error)"
        if error.errno == ETIMEDOUT { return .timeout(what) }
        return .unavailable(what)
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
        guard !closed, let socket else { return }
        if let tls {
            if case .failed(let error) = tls.writePlaintext(bytes[...]) {
                fail(.badGateway("TLS: \(error)"))
                return
            }
            flushCiphertext()
        } else {
            socket.write(bytes)
        }
    }

    var bufferedWriteBytes: Int { socket?.bufferedWriteBytes ?? 0 }

    func pauseReading() { socket?.pauseReading() }
    func resumeReading() { socket?.resumeReading() }

    private func flushCiphertext() {
        guard let tls, let socket else { return }
        let out = tls.takeCiphertext()
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
        socket.shutdownWrite()
    }

    /// Closes after sending TLS close_notify, reporting no failure.
    func close() {
        guard !closed else { return }
        if connected, let tls {
            tls.shutdown()
            flushCiphertext()
        }
        finish(failure: nil)
    }

    func fail(_ failure: UpstreamFailure) {
        finish(failure: failure)
    }

    private func finish(failure: UpstreamFailure?) {
        guard !closed else { return }
        closed = true
        pendingFailure = failure
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

    // MARK: StreamConnectionDelegate

    func connection(_ c: StreamConnection, didRead bytes: ArraySlice<UInt8>) {
        guard !closed else { return }
        guard let tls else {
            delegate?.transport(self, didRead: Array(bytes))
            return
        }
        tls.feed(ciphertext: bytes)
        if !connected {
            guard handleTLS(tls.startHandshake()) else { return }
            flushCiphertext()
            if !connected { return }
        }
        plaintextBuffer.removeAll(keepingCapacity: true)
        let result = tls.readPlaintext(into: &plaintextBuffer, max: Int.max)
        flushCiphertext()  // TLS 1.3 post-handshake messages, key updates
        if !plaintextBuffer.isEmpty {
            let data = plaintextBuffer
            plaintextBuffer = []
            delegate?.transport(self, didRead: data)
        }
        switch result {
        case .complete, .needsInput: break
        case .closed: finish(failure: nil)
        case .failed(let error): fail(.badGateway("TLS: \(error)"))
        }
    }

    func connectionDidReadEOF(_ c: StreamConnection) {
        finish(failure: connected ? nil : .badGateway("the apiserver closed the connection during the TLS handshake"))
    }

    func connectionDidDrainWrites(_ c: StreamConnection) {
        guard !closed else { return }
        delegate?.transportDidDrainWrites(self)
    }

    func connection(_ c: StreamConnection, didFail error: IOError) {
        finish(failure: .badGateway("connection to \(target.authority) failed: \(error)"))
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
