internal import COpenSSL
#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#elseif canImport(Darwin)
internal import Darwin
#endif

/// One client-side TLS connection: an OpenSSL `SSL` over a `BufferBIO` that reads ciphertext from `incoming` and
/// writes records to `outgoing`. Bytes in, bytes out; it never touches a file descriptor.
///
/// Driving it (on the connection's loop):
/// 1. `startHandshake()`, then send `takeCiphertext()` to the socket.
/// 2. For every burst read from the socket: `feed(ciphertext:)`, then `readPlaintext(into:max:)` (which also
///    advances the handshake), then send `takeCiphertext()` — reading can produce output (handshake messages,
///    TLS 1.3 key updates).
/// 3. `writePlaintext(_:)`, then send `takeCiphertext()`.
/// 4. `shutdown()`, then send `takeCiphertext()` and close the socket without waiting for the peer's reply.
///
/// Owns the `SSL` (freed in `deinit`), which owns its BIO. Not thread-safe and not `Sendable`: confined
/// to the event loop of its connection.
public final class TLSEngine {
    private enum State {
        case open
        /// close_notify received.
        case closed
        /// `SSL_ERROR_SSL` or `SSL_ERROR_SYSCALL` seen: never call into the record layer (or `SSL_shutdown`) again.
        case failed(TLSError)
    }

    private enum Identity {
        case dnsName(String)
        case ipAddress(String)
    }

    private let ssl: OpaquePointer
    /// Keeps the configuration (and, redundantly with OpenSSL's own reference, the `SSL_CTX`) alive.
    private let context: TLSContext
    private let identity: Identity
    private var state: State = .open
    private var handshakeDone = false
    private var sentCloseNotify = false
    /// Plaintext accepted by `writePlaintext` that OpenSSL has not taken yet (handshake still running).
    private var pendingPlaintext: [UInt8] = []
    /// Ciphertext fed and not yet read by OpenSSL (usually the socket's read buffer itself: no copy). Only touched
    /// by `feed` and the BIO.
    var incoming = ByteBuffer()
    /// TLS records OpenSSL wrote, waiting for `takeCiphertext`. Only touched by the BIO and `takeCiphertext`.
    var outgoing = ByteBuffer()

    /// Creates the connection state for one upstream connection.
    /// - Parameters:
    ///   - context: Shared configuration; the engine keeps a reference.
    ///   - host: The upstream host: a DNS name, or an IPv4 / IPv6 literal (brackets allowed, `"[::1]"`).
    ///     `context.configuration.serverName`, when set, replaces it for both SNI and the identity check.
    ///     DNS names are sent as SNI and checked with `SSL_set1_host`; IP literals are not sent as SNI and are
    ///     checked against the certificate's IP SANs. No identity check when `insecureSkipVerify` is set.
    /// - Throws: `TLSError` (`.invalidConfiguration` for an empty or unusable name).
    public init(context: TLSContext, host: String) throws(TLSError) {
        let identity = try Self.identity(for: context.configuration.serverName ?? host)
        ERR_clear_error()
        guard let ssl = context.withUnsafeSSLContext({ SSL_new($0) }) else {
            throw TLSError(kind: .internalError, reason: "SSL_new failed", openSSLErrors: .drain())
        }
        self.ssl = ssl
        self.context = context
        self.identity = identity
        // Fully initialised: a throw below runs deinit, which frees `ssl` (and the BIOs once attached).

        guard let bio = BufferBIO.make(for: self) else {
            throw TLSError(kind: .internalError, reason: "BIO_new failed", openSSLErrors: .drain())
        }
        // An empty buffer reports "retry" (not EOF): exactly the WANT_READ we want.
        SSL_set_bio(ssl, bio, bio)  // the SSL owns the BIO (one reference for both directions) from here on
        SSL_set_connect_state(ssl)

        let verify = !context.configuration.insecureSkipVerify
        switch identity {
        case .dnsName(let name):
            guard CProxy_SSL_set_tlsext_host_name(ssl, name) == 1 else {
                throw TLSError(
                    kind: .invalidConfiguration, reason: "cannot use \"\(name)\" as TLS server name (SNI)",
                    openSSLErrors: .drain()
                )
            }
            if verify {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard SSL_set1_host(ssl, name) == 1 else {
                    throw TLSError(
                        kind: .invalidConfiguration, reason: "cannot check certificates for host \"\(name)\"",
                        openSSLErrors: .drain()
                    )
                }
            }
        case .ipAddress(let address):
            if verify {
                guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), address) == 1 else {
                    throw TLSError(
                        kind: .invalidConfiguration, reason: "cannot check certificates for IP \(address)",
                        openSSLErrors: .drain()
                    )
                }
            }
        }
    }

    deinit { SSL_free(ssl) }

    // MARK: - Handshake

    /// Starts (or continues) the client handshake. Send `takeCiphertext()` afterwards.
    /// - Returns: `.complete` once the handshake is done, `.needsInput` while waiting for the server,
    ///   `.failed` with a readable reason (certificate verification results are named).
    public func startHandshake() -> TLSResult {
        switch state {
        case .failed(let error): return .failed(error)
        case .closed: return .closed
        case .open: break
        }
        let result = driveHandshake()
        guard result == .complete else { return result }
        return flushPendingPlaintext()
    }

    /// Whether the handshake has finished (stays `true` afterwards, also after close or failure).
    public var isHandshakeComplete: Bool { handshakeDone }

    /// The ALPN protocol the server selected (`"h2"`, `"http/1.1"`), or `nil` if none was negotiated.
    public var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    // MARK: - Ciphertext side

    /// Appends bytes received from the socket to the read BIO (copied). Follow with `readPlaintext`.
    public func feed(ciphertext: ArraySlice<UInt8>) {
        ciphertext.withUnsafeBytes { feed(raw: $0) }
    }

    /// Appends the readable bytes of `ciphertext` to the read BIO (copied). Follow with `readPlaintext`.
    public func feed(ciphertext: ByteBuffer) {
        if incoming.isEmpty {
            incoming = ciphertext   // shared, not copied; dropped by the BIO once read
        } else {
            incoming.writeBuffer(ciphertext)
        }
    }

    private func feed(raw: UnsafeRawBufferPointer) {
        incoming.writeBytes(raw)
    }

    /// Drains the write BIO: the TLS records to send to the socket, in order. Empty when there is nothing to send.
    public func takeCiphertext() -> [UInt8] {
        takeCiphertextBuffer().readableBytesArray
    }

    /// The TLS records to send to the socket, in order, as one buffer (no copy); empty when there is nothing to send.
    public func takeCiphertextBuffer() -> ByteBuffer {
        var out = ByteBuffer()
        swap(&out, &outgoing)
        return out
    }

    // MARK: - Plaintext side

    /// Decrypts everything that was fed, advancing the handshake first if it is still running, and appends the
    /// plaintext to `buffer`. Loops `SSL_read` until OpenSSL wants more input, so no decrypted record is left
    /// waiting inside SSL where no socket event would ever wake us for it.
    /// - Parameters:
    ///   - buffer: Plaintext is appended; existing contents are kept.
    ///   - max: At most this many bytes are appended (must be > 0).
    /// - Returns: `.needsInput` when all input was consumed (the normal case — feed more when it arrives);
    ///   `.complete` when it stopped at `max` with more plaintext possibly buffered (call again);
    ///   `.closed` when close_notify arrived (bytes before it were appended); `.failed` on a fatal error.
    ///   After any call, send `takeCiphertext()`.
    public func readPlaintext(into buffer: inout [UInt8], max: Int) -> TLSResult {
        var plaintext = ByteBuffer()
        let result = readPlaintext(into: &plaintext, max: max)
        plaintext.withUnsafeReadableBytes { buffer.append(contentsOf: $0) }
        return result
    }

    /// As `readPlaintext(into:max:)` for arrays, decrypting straight into `buffer`'s writable space (no copy).
    public func readPlaintext(into buffer: inout ByteBuffer, max: Int) -> TLSResult {
        precondition(max > 0, "readPlaintext needs max > 0")
        switch state {
        case .failed(let error): return .failed(error)
        case .closed: return .closed
        case .open: break
        }
        if !handshakeDone {
            let result = driveHandshake()
            guard result == .complete else { return result }
            if case .failed(let error) = flushPendingPlaintext() { return .failed(error) }
        }
        // SSL_read is called until OpenSSL wants more input (or `max` is reached), each time into the buffer's
        // free space, which grows by 64 KiB when full.
        var appended = 0
        while appended < max {
            var stopCode: Int32 = 1
            // Room for all the ciphertext waiting plus the record OpenSSL may hold, so one pass decrypts everything
            // (plaintext is never longer than its ciphertext): growing the buffer midway would copy it.
            let room = Swift.min(max - appended, incoming.readableBytes + Int(SSL_pending(ssl)) + 17 * 1024)
            appended += buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: room) {
                out in
                let want = Swift.min(max - appended, out.count)
                var count = 0
                while count < want {
                    ERR_clear_error()
                    let n = SSL_read(ssl, out.baseAddress! + count, Int32(clamping: want - count))
                    if n <= 0 {
                        stopCode = n
                        break
                    }
                    count += Int(n)
                }
                return count
            }
            if stopCode > 0 { continue }
            let result = classify(returnCode: stopCode)
            if result == .needsInput, !pendingPlaintext.isEmpty {
                // A renegotiation or key update that blocked an earlier write may have finished.
                if case .failed(let error) = flushPendingPlaintext() { return .failed(error) }
            }
            return result
        }
        return .complete
    }

    /// Encrypts `bytes` into the write BIO; send `takeCiphertext()` afterwards.
    ///
    /// All or error: the engine takes every byte. If the handshake is still running it is driven first, and bytes
    /// OpenSSL cannot take yet are kept in order and written as soon as the handshake completes (during
    /// `readPlaintext`).
    /// - Returns: `.complete` when all bytes were encrypted, `.needsInput` when some wait for the handshake,
    ///   `.closed` after `shutdown()`, `.failed` on a fatal error.
    public func writePlaintext(_ bytes: ArraySlice<UInt8>) -> TLSResult {
        if case .failed(let error) = state { return .failed(error) }
        if sentCloseNotify { return .closed }
        if !pendingPlaintext.isEmpty || !handshakeDone {
            pendingPlaintext += bytes
            return flushPendingPlaintext()
        }
        var remaining = bytes
        while !remaining.isEmpty {
            let n = write(remaining)
            if n > 0 {
                remaining = remaining.dropFirst(Int(n))
                continue
            }
            let result = classify(returnCode: n)
            if result == .needsInput { pendingPlaintext += remaining }
            return result
        }
        return .complete
    }

    /// As `writePlaintext(_:)` for array slices, encrypting straight from the buffer's storage.
    public func writePlaintext(_ bytes: ByteBuffer) -> TLSResult {
        if case .failed(let error) = state { return .failed(error) }
        if sentCloseNotify { return .closed }
        if !pendingPlaintext.isEmpty || !handshakeDone { return writePlaintext(bytes.readableBytesArray[...]) }
        return bytes.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset < raw.count {
                ERR_clear_error()
                let n = SSL_write(ssl, raw.baseAddress! + offset, Int32(clamping: raw.count - offset))
                if n > 0 {
                    offset += Int(n)
                    continue
                }
                let result = classify(returnCode: n)
                if result == .needsInput { pendingPlaintext += raw[offset...] }
                return result
            }
            return .complete
        }
    }

    /// Plaintext bytes accepted by `writePlaintext` but not yet encrypted (waiting for the handshake).
    public var pendingPlaintextByteCount: Int { pendingPlaintext.count }

    /// Queues close_notify once (send `takeCiphertext()` and close; do not wait for the peer's reply).
    /// Does nothing after a fatal error (`SSL_ERROR_SSL` / `SSL_ERROR_SYSCALL`), before the handshake finished,
    /// or when called again. Later `writePlaintext` calls return `.closed`.
    public func shutdown() {
        guard !sentCloseNotify else { return }
        sentCloseNotify = true
        if case .failed = state { return }
        guard handshakeDone else { return }
        ERR_clear_error()
        // 0 = close_notify sent, peer's not yet received (expected: we do not wait); 1 = both; < 0 = error.
        if SSL_shutdown(ssl) < 0 {
            _ = OpenSSLErrorStack.drain()
        }
    }

    // MARK: - Internals

    private func driveHandshake() -> TLSResult {
        if handshakeDone { return .complete }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return .complete
        }
        return classify(returnCode: rc)
    }

    /// Writes as much of `pendingPlaintext` as OpenSSL takes; drives the handshake first if needed.
    private func flushPendingPlaintext() -> TLSResult {
        if !handshakeDone {
            let result = driveHandshake()
            guard result == .complete else { return result }
        }
        var written = 0
        defer { pendingPlaintext.removeFirst(written) }
        while written < pendingPlaintext.count {
            let n = write(pendingPlaintext[written...])
            if n > 0 {
                written += Int(n)
                continue
            }
            return classify(returnCode: n)
        }
        return .complete
    }

    /// One `SSL_write` of (at most one record of) `bytes`. With `SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER` a retry may
    /// pass the same bytes from a different address.
    private func write(_ bytes: ArraySlice<UInt8>) -> Int32 {
        ERR_clear_error()
        return bytes.withUnsafeBytes { raw in
            SSL_write(ssl, raw.baseAddress!, Int32(min(raw.count, Int(Int32.max))))
        }
    }

    /// Maps a non-positive return of an SSL call to a result, recording fatal states. Must run right after the
    /// call, before anything else touches the thread's error queue.
    private func classify(returnCode: Int32) -> TLSResult {
        let code = SSL_get_error(ssl, returnCode)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            // Either can come from a read or a write (TLS 1.3 tickets, key updates). With memory BIOs, WANT_WRITE
            // cannot really happen; the caller flushes `takeCiphertext()` after every call anyway.
            return .needsInput
        case SSL_ERROR_ZERO_RETURN:
            state = .closed
            return .closed
        case SSL_ERROR_SYSCALL:
            let stack = OpenSSLErrorStack.drain()
            let error = TLSError(
                kind: .unexpectedEOF,
                reason: stack.reasons.first ?? "transport ended without close_notify",
                openSSLErrors: stack
            )
            state = .failed(error)
            return .failed(error)
        case SSL_ERROR_SSL:
            let error = makeProtocolError(stack: .drain())
            state = .failed(error)
            return .failed(error)
        default:
            let error = TLSError(
                kind: .internalError, reason: "unexpected SSL_get_error result \(code)", openSSLErrors: .drain()
            )
            state = .failed(error)
            return .failed(error)
        }
    }

    private func makeProtocolError(stack: OpenSSLErrorStack) -> TLSError {
        let verifyResult = SSL_get_verify_result(ssl)
        if !handshakeDone, verifyResult != Int(X509_V_OK), !context.configuration.insecureSkipVerify {
            var reason = "certificate verify failed: " + String(cString: X509_verify_cert_error_string(verifyResult))
            switch (Int32(verifyResult), identity) {
            case (X509_V_ERR_HOSTNAME_MISMATCH, .dnsName(let name)):
                reason += " (certificate is not valid for \"\(name)\")"
            case (X509_V_ERR_IP_ADDRESS_MISMATCH, .ipAddress(let address)):
                reason += " (certificate is not valid for \(address))"
            default:
                break
            }
            return TLSError(
                kind: .certificateVerificationFailed, reason: reason, openSSLErrors: stack,
                verifyResult: Int(verifyResult)
            )
        }
        return TLSError(
            kind: handshakeDone ? .protocolError : .handshakeFailed,
            reason: stack.reasons.first ?? "unknown OpenSSL error",
            openSSLErrors: stack
        )
    }

    /// Classifies the name the certificate is checked against: IP literal (brackets and an IPv6 zone stripped)
    /// or DNS name (one trailing dot stripped, as SNI must not carry it).
    private static func identity(for host: String) throws(TLSError) -> Identity {
        var name = Substring(host)
        if name.hasPrefix("[") && name.hasSuffix("]") && name.count >= 2 {
            name = name.dropFirst().dropLast()
        }
        guard !name.isEmpty else {
            throw TLSError(kind: .invalidConfiguration, reason: "empty TLS server name")
        }
        var scratch = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, String(name), &scratch) == 1 {
            return .ipAddress(String(name))
        }
        let withoutZone = name.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)[0]
        if inet_pton(AF_INET6, String(withoutZone), &scratch) == 1 {
            return .ipAddress(String(withoutZone))
        }
        if name.hasSuffix(".") { name = name.dropLast() }
        guard !name.isEmpty, !name.contains("\0") else {
            throw TLSError(kind: .invalidConfiguration, reason: "invalid TLS server name \"\(host)\"")
        }
        return .dnsName(String(name))
    }
}
