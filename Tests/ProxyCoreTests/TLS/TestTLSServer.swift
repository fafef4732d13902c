import COpenSSL
@testable import ProxyCore

/// A test-only OpenSSL TLS *server* over memory BIOs: the peer for `TLSEngine` in the in-memory tests.
/// Selects ALPN in the order h2, http/1.1; optionally requires a client certificate from `clientCA`.
final class TestTLSServer {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private(set) var handshakeDone = false
    private(set) var failure: String?
    private(set) var receivedCloseNotify = false
    /// Plaintext received from the client.
    var received: [UInt8] = []

    init(
        identity: TestIdentity, chain: [TestIdentity] = [], requireClientCertificateFrom clientCA: TestIdentity? = nil,
        maxVersion: Int32? = nil
    ) {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { fatalError("SSL_CTX_new") }
        self.ctx = ctx
        precondition(SSL_CTX_use_certificate(ctx, identity.certificate.x509) == 1)
        for intermediate in chain {
            precondition(CProxy_SSL_CTX_add1_chain_cert(ctx, intermediate.certificate.x509) == 1)
        }
        precondition(SSL_CTX_use_PrivateKey(ctx, identity.key.pkey) == 1)
        if let maxVersion {
            precondition(CProxy_SSL_CTX_set_max_proto_version(ctx, maxVersion) == 1)
        }
        if let clientCA {
            precondition(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), clientCA.certificate.x509) == 1)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        SSL_CTX_set_alpn_select_cb(ctx, selectALPN, nil)
        guard let ssl = SSL_new(ctx) else { fatalError("SSL_new") }
        self.ssl = ssl
        SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()))
        SSL_set_accept_state(ssl)
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    func feed(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let n = bytes.withUnsafeBytes { BIO_write(SSL_get_rbio(ssl), $0.baseAddress, Int32($0.count)) }
        precondition(Int(n) == bytes.count)
    }

    func takeCiphertext() -> [UInt8] {
        let wbio = SSL_get_wbio(ssl)
        let count = CProxy_BIO_pending(wbio)
        guard count > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32(count)) }
        precondition(Int(n) == count)
        return out
    }

    /// Advances the handshake and reads all available plaintext into `received`.
    func drive() {
        guard failure == nil else { return }
        if !handshakeDone {
            ERR_clear_error()
            let rc = SSL_do_handshake(ssl)
            if rc == 1 {
                handshakeDone = true
            } else {
                let err = SSL_get_error(ssl, rc)
                if err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE {
                    failure = "handshake: \(err) \(OpenSSLErrorStack.drainForTests())"
                }
                return
            }
        }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            ERR_clear_error()
            let n = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 {
                received += buffer[..<Int(n)]
                continue
            }
            let err = SSL_get_error(ssl, n)
            if err == SSL_ERROR_ZERO_RETURN {
                receivedCloseNotify = true
            } else if err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE {
                failure = "read: \(err) \(OpenSSLErrorStack.drainForTests())"
            }
            return
        }
    }

    func write(_ bytes: [UInt8]) {
        precondition(handshakeDone)
        ERR_clear_error()
        let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        precondition(Int(n) == bytes.count, "server SSL_write: \(n)")
    }

    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    var selectedALPN: String? {
        var data: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The SNI the client sent, if any.
    var serverNameIndication: String? {
        guard let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return nil }
        return String(cString: name)
    }

    /// Subject CN of the verified client certificate.
    var clientCertificateCommonName: String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        var buffer = [CChar](repeating: 0, count: 256)
        let n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &buffer, Int32(buffer.count))
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var negotiatedVersion: String { String(cString: SSL_get_version(ssl)) }
}

/// Server-side ALPN choice: the first of h2, http/1.1 the client offered.
private let selectALPN: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
    UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
) -> Int32 = { _, out, outLength, offered, offeredLength, _ in
    guard let out, let outLength, let offered else { return SSL_TLSEXT_ERR_NOACK }
    for preferred in [Array("h2".utf8), Array("http/1.1".utf8)] {
        var index = 0
        while index < Int(offeredLength) {
            let length = Int(offered[index])
            let name = Array(UnsafeBufferPointer(start: offered + index + 1, count: length))
            if name == preferred {
                out.pointee = offered + index + 1
                outLength.pointee = UInt8(length)
                return SSL_TLSEXT_ERR_OK
            }
            index += 1 + length
        }
    }
    return SSL_TLSEXT_ERR_NOACK
}

extension OpenSSLErrorStack {
    static func drainForTests() -> String { OpenSSLErrorStack.drain().description }
}
