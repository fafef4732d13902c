/// Every failure of the TLS layer: building a context, a handshake, or a record-layer error afterwards.
///
/// A struct over an open set of kinds (the `NIOSSLExtraError` shape), so kinds can be added without breaking
/// `switch`es. `reason` is the one-line cause meant for logs and 502 bodies ("certificate verify failed:
/// hostname mismatch"); `openSSLErrors` is the full OpenSSL error queue at the failure.
public struct TLSError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What failed, coarse-grained.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case invalidConfiguration, handshakeFailed, certificateVerificationFailed, protocolError
            case unexpectedEOF, internalError
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The `TLSConfiguration` could not be turned into a context (bad PEM, key mismatch, bad ALPN name, bad host).
        public static let invalidConfiguration = Kind(.invalidConfiguration)
        /// The handshake failed for a reason other than certificate verification (alert from the peer, no shared
        /// protocol version or cipher, malformed handshake message).
        public static let handshakeFailed = Kind(.handshakeFailed)
        /// The peer's certificate was rejected: untrusted chain, expired, or name / IP mismatch.
        public static let certificateVerificationFailed = Kind(.certificateVerificationFailed)
        /// A fatal TLS error after the handshake (bad record MAC, unexpected message, alert).
        public static let protocolError = Kind(.protocolError)
        /// OpenSSL reported `SSL_ERROR_SYSCALL` with an empty queue: the transport ended without close_notify.
        public static let unexpectedEOF = Kind(.unexpectedEOF)
        /// Allocation failure or a state OpenSSL should never report.
        public static let internalError = Kind(.internalError)

        public var description: String {
            switch base {
            case .invalidConfiguration: "invalid TLS configuration"
            case .handshakeFailed: "TLS handshake failed"
            case .certificateVerificationFailed: "TLS handshake failed"
            case .protocolError: "TLS protocol error"
            case .unexpectedEOF: "TLS connection ended unexpectedly"
            case .internalError: "TLS internal error"
            }
        }
    }

    public let kind: Kind
    /// One-line cause, e.g. "certificate verify failed: self-signed certificate".
    public let reason: String
    /// The OpenSSL error queue drained when the error was created (may be empty).
    public let openSSLErrors: OpenSSLErrorStack
    /// `SSL_get_verify_result` when it was not `X509_V_OK` (an `X509_V_ERR_*` code), else `nil`.
    public let verifyResult: Int?

    public init(kind: Kind, reason: String, openSSLErrors: OpenSSLErrorStack = .init(), verifyResult: Int? = nil) {
        self.kind = kind
        self.reason = reason
        self.openSSLErrors = openSSLErrors
        self.verifyResult = verifyResult
    }

    public var description: String {
        var text = "\(kind): \(reason)"
        if !openSSLErrors.isEmpty {
            text += " [\(openSSLErrors)]"
        }
        return text
    }
}

/// The outcome of one `TLSEngine` step.
public enum TLSResult: Equatable, Sendable {
    /// The step finished: handshake done (`startHandshake`), all bytes taken (`writePlaintext`), or `max` bytes
    /// were read and more plaintext may be buffered (`readPlaintext`: call it again).
    case complete
    /// OpenSSL needs more ciphertext from the peer before it can go on. Everything fed so far has been consumed.
    case needsInput
    /// The peer sent close_notify: no more plaintext will come.
    case closed
    /// A fatal error; the engine is unusable and `shutdown()` will send nothing.
    case failed(TLSError)
}
