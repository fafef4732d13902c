internal import COpenSSL

/// An OpenSSL client `SSL_CTX` built from a `TLSConfiguration`: TLS 1.2 minimum, peer verification (unless
/// `insecureSkipVerify`), trusted CAs, optional client certificate chain and key, ALPN offer.
///
/// Owns the `SSL_CTX` (freed in `deinit`); the pointer never leaves this class except inside
/// `withUnsafeSSLContext`. Immutable after `init`, so one context is shared by the engines of all loops
/// (`SSL_new` on a shared, unmodified `SSL_CTX` is thread-safe); that is why it is `@unchecked Sendable`.
public final class TLSContext: @unchecked Sendable {
    /// The configuration this context was built from (engines read `serverName` and `insecureSkipVerify`).
    public let configuration: TLSConfiguration
    private let ctx: OpaquePointer

    /// Builds the context.
    /// - Parameter configuration: PEM material is parsed here; nothing is read from files.
    /// - Throws: `TLSError` with kind `.invalidConfiguration` naming the problem (no certificate in the CA
    ///   bundle, unparsable client certificate or key, "client certificate and key do not match", bad ALPN name).
    public init(configuration: TLSConfiguration) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw TLSError(kind: .internalError, reason: "SSL_CTX_new failed", openSSLErrors: .drain())
        }
        self.configuration = configuration
        self.ctx = ctx  // fully initialised from here on: a throw below runs deinit, which frees ctx

        guard CProxy_SSL_CTX_set_min_proto_version(ctx, CProxy_TLS1_2_VERSION()) == 1 else {
            throw TLSError(kind: .internalError, reason: "cannot set TLS 1.2 minimum", openSSLErrors: .drain())
        }
        // Memory BIOs never block, so partial writes and a moving write buffer are safe and let
        // `TLSEngine.writePlaintext` keep unsent plaintext in a Swift array across calls.
        _ = CProxy_SSL_CTX_set_mode(
            ctx,
            CProxy_SSL_MODE_RELEASE_BUFFERS() | CProxy_SSL_MODE_ENABLE_PARTIAL_WRITE()
                | CProxy_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER()
        )
        SSL_CTX_set_verify(ctx, configuration.insecureSkipVerify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nil)

        if let caPEM = configuration.caPEM {
            try Self.loadTrustedCertificates(caPEM, into: ctx)
        } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
            throw TLSError(
                kind: .invalidConfiguration, reason: "cannot load the system's default CA paths",
                openSSLErrors: .drain()
            )
        }

        switch (configuration.clientCertificatePEM, configuration.clientKeyPEM) {
        case (nil, nil):
            break
        case (.some, nil):
            throw TLSError(kind: .invalidConfiguration, reason: "client certificate given without a client key")
        case (nil, .some):
            throw TLSError(kind: .invalidConfiguration, reason: "client key given without a client certificate")
        case (let certificatePEM?, let keyPEM?):
            try Self.useClientIdentity(certificatePEM: certificatePEM, keyPEM: keyPEM, in: ctx)
        }

        if !configuration.alpn.isEmpty {
            let wire = try Self.alpnWireFormat(configuration.alpn)
            // Unlike most of OpenSSL, SSL_CTX_set_alpn_protos returns 0 on success.
            let rc = wire.withUnsafeBufferPointer { SSL_CTX_set_alpn_protos(ctx, $0.baseAddress, UInt32($0.count)) }
            guard rc == 0 else {
                throw TLSError(kind: .internalError, reason: "cannot set ALPN protocols", openSSLErrors: .drain())
            }
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Runs `body` with the `SSL_CTX`; the pointer is valid only inside the closure and must not be stored.
    func withUnsafeSSLContext<R, E: Error>(_ body: (OpaquePointer) throws(E) -> R) throws(E) -> R {
        try body(ctx)
    }

    // MARK: - Building blocks

    private static func loadTrustedCertificates(_ pem: [UInt8], into ctx: OpaquePointer) throws(TLSError) {
        let certificates = try OpenSSLCertificate.readAll(pem: pem, what: "CA bundle")
        guard !certificates.isEmpty else {
            throw TLSError(kind: .invalidConfiguration, reason: "CA bundle contains no PEM certificate")
        }
        guard let store = SSL_CTX_get_cert_store(ctx) else {
            throw TLSError(kind: .internalError, reason: "SSL_CTX has no X509_STORE", openSSLErrors: .drain())
        }
        for (index, certificate) in certificates.enumerated() {
            try certificate.withUnsafeX509 { x509 throws(TLSError) in
                ERR_clear_error()
                // X509_STORE_add_cert takes its own reference.
                if X509_STORE_add_cert(store, x509) != 1 {
                    let last = ERR_peek_last_error()
                    // A bundle listing one CA twice is harmless (older OpenSSL reported it as an error).
                    if ERR_GET_LIB(last) == ERR_LIB_X509 && ERR_GET_REASON(last) == X509_R_CERT_ALREADY_IN_HASH_TABLE {
                        ERR_clear_error()
                        return
                    }
                    throw TLSError(
                        kind: .invalidConfiguration, reason: "CA bundle: certificate #\(index + 1) cannot be trusted",
                        openSSLErrors: .drain()
                    )
                }
            }
        }
    }

    private static func useClientIdentity(
        certificatePEM: [UInt8], keyPEM: [UInt8], in ctx: OpaquePointer
    ) throws(TLSError) {
        let chain = try OpenSSLCertificate.readAll(pem: certificatePEM, what: "client certificate")
        guard let leaf = chain.first else {
            throw TLSError(kind: .invalidConfiguration, reason: "client certificate contains no PEM certificate")
        }
        try leaf.withUnsafeX509 { x509 throws(TLSError) in
            ERR_clear_error()
            guard SSL_CTX_use_certificate(ctx, x509) == 1 else {  // takes its own reference
                throw TLSError(
                    kind: .invalidConfiguration, reason: "client certificate cannot be used", openSSLErrors: .drain()
                )
            }
        }
        for (index, intermediate) in chain.dropFirst().enumerated() {
            try intermediate.withUnsafeX509 { x509 throws(TLSError) in
                ERR_clear_error()
                guard CProxy_SSL_CTX_add1_chain_cert(ctx, x509) == 1 else {  // takes its own reference
                    throw TLSError(
                        kind: .invalidConfiguration,
                        reason: "client certificate chain: certificate #\(index + 2) cannot be used",
                        openSSLErrors: .drain()
                    )
                }
            }
        }
        let key = try OpenSSLPrivateKey.read(pem: keyPEM, what: "client key")
        try key.withUnsafeKey { pkey throws(TLSError) in
            ERR_clear_error()
            // SSL_CTX_use_PrivateKey already refuses a key of the certificate's type that does not match it.
            if SSL_CTX_use_PrivateKey(ctx, pkey) != 1 {
                let last = ERR_peek_last_error()
                let mismatch = ERR_GET_LIB(last) == ERR_LIB_X509 && ERR_GET_REASON(last) == X509_R_KEY_VALUES_MISMATCH
                throw TLSError(
                    kind: .invalidConfiguration,
                    reason: mismatch ? "client certificate and key do not match" : "client key cannot be used",
                    openSSLErrors: .drain()
                )
            }
        }
        ERR_clear_error()
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError(
                kind: .invalidConfiguration, reason: "client certificate and key do not match", openSSLErrors: .drain()
            )
        }
    }

    /// ALPN protocol names as the TLS wire list: each name prefixed with its length (1...255 bytes).
    static func alpnWireFormat(_ protocols: [String]) throws(TLSError) -> [UInt8] {
        var wire: [UInt8] = []
        for name in protocols {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw TLSError(
                    kind: .invalidConfiguration, reason: "ALPN protocol name \"\(name)\" must be 1 to 255 bytes"
                )
            }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        return wire
    }
}
