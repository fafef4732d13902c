internal import COpenSSL

// Single owners for the short-lived OpenSSL objects `TLSContext` needs while it is built. Each one creates or takes
// its object in `init`, frees it in `deinit`, and hands the pointer out only inside `withUnsafe…` closures.

/// Owns one memory `BIO` holding a private copy of some bytes (PEM input or output).
final class OpenSSLMemoryBIO {
    private let bio: OpaquePointer

    /// A memory BIO holding a copy of `bytes`.
    init(copying bytes: [UInt8]) throws(TLSError) {
        guard let bio = BIO_new(BIO_s_mem()) else {
            throw TLSError(kind: .internalError, reason: "BIO_new failed", openSSLErrors: .drain())
        }
        self.bio = bio
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int(Int32.max))
            let written = bytes.withUnsafeBytes { raw in
                BIO_write(bio, raw.baseAddress! + offset, Int32(chunk))
            }
            guard written > 0 else {
                throw TLSError(kind: .internalError, reason: "BIO_write failed", openSSLErrors: .drain())
            }
            offset += Int(written)
        }
    }

    deinit { BIO_free(bio) }

    /// Runs `body` with the BIO; the pointer is valid only inside the closure.
    func withUnsafeBIO<R>(_ body: (OpaquePointer) throws(TLSError) -> R) throws(TLSError) -> R {
        try body(bio)
    }
}

/// Owns one `X509` (one reference to it).
final class OpenSSLCertificate {
    private let x509: OpaquePointer

    /// Takes over the reference the caller holds on `x509`.
    init(takingOwnershipOf x509: OpaquePointer) { self.x509 = x509 }

    deinit { X509_free(x509) }

    func withUnsafeX509<R>(_ body: (OpaquePointer) throws(TLSError) -> R) throws(TLSError) -> R {
        try body(x509)
    }

    /// Every certificate in a PEM text, in order (`CERTIFICATE` and `TRUSTED CERTIFICATE` blocks; other blocks are
    /// skipped). Throws if a certificate block does not parse; returns `[]` if there is none.
    static func readAll(pem: [UInt8], what: String) throws(TLSError) -> [OpenSSLCertificate] {
        let bio = try OpenSSLMemoryBIO(copying: pem)
        return try bio.withUnsafeBIO { bio throws(TLSError) in
            var certificates: [OpenSSLCertificate] = []
            ERR_clear_error()
            while let x509 = PEM_read_bio_X509_AUX(bio, nil, nil, nil) {
                certificates.append(OpenSSLCertificate(takingOwnershipOf: x509))
            }
            // The loop always ends with an error: "no start line" means the text simply has no further block.
            let last = ERR_peek_last_error()
            if last != 0 && !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
                throw TLSError(
                    kind: .invalidConfiguration,
                    reason: "\(what): certificate #\(certificates.count + 1) could not be parsed",
                    openSSLErrors: .drain()
                )
            }
            ERR_clear_error()
            return certificates
        }
    }
}

/// Owns one `EVP_PKEY` (one reference to it).
final class OpenSSLPrivateKey {
    private let pkey: OpaquePointer

    /// Takes over the reference the caller holds on `pkey`.
    init(takingOwnershipOf pkey: OpaquePointer) { self.pkey = pkey }

    deinit { EVP_PKEY_free(pkey) }

    func withUnsafeKey<R>(_ body: (OpaquePointer) throws(TLSError) -> R) throws(TLSError) -> R {
        try body(pkey)
    }

    /// The first private key in a PEM text (PKCS#8, traditional RSA or EC). Encrypted keys are refused rather
    /// than prompting on the terminal, which OpenSSL's default password callback would do.
    static func read(pem: [UInt8], what: String) throws(TLSError) -> OpenSSLPrivateKey {
        let bio = try OpenSSLMemoryBIO(copying: pem)
        return try bio.withUnsafeBIO { bio throws(TLSError) in
            ERR_clear_error()
            let refusePassword: @convention(c) (
                UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?
            ) -> Int32 = { _, _, _, _ in -1 }
            guard let pkey = PEM_read_bio_PrivateKey(bio, nil, refusePassword, nil) else {
                throw TLSError(
                    kind: .invalidConfiguration,
                    reason: "\(what): no usable PEM private key (encrypted keys are not supported)",
                    openSSLErrors: .drain()
                )
            }
            return OpenSSLPrivateKey(takingOwnershipOf: pkey)
        }
    }
}
