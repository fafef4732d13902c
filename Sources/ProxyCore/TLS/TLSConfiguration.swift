/// What an upstream TLS connection needs to know, with no file paths left: PEM bytes are already loaded.
///
/// Value type, `Hashable`, so a changed configuration (rotated certificate files) is detected by comparison and
/// a new `TLSContext` built for new connections only.
public struct TLSConfiguration: Sendable, Hashable {
    /// PEM bundle of trusted CAs; `nil` means the system's default verify paths.
    public var caPEM: [UInt8]?
    /// Skip chain and name verification (`insecure-skip-tls-verify`).
    public var insecureSkipVerify: Bool
    /// PEM client certificate (chain) presented to the server.
    public var clientCertificatePEM: [UInt8]?
    /// PEM private key of `clientCertificatePEM`.
    public var clientKeyPEM: [UInt8]?
    /// `tls-server-name`: overrides the name used for SNI and the identity check.
    public var serverName: String?
    /// ALPN protocols to offer, in preference order.
    public var alpn: [String]

    public init(
        caPEM: [UInt8]? = nil,
        insecureSkipVerify: Bool = false,
        clientCertificatePEM: [UInt8]? = nil,
        clientKeyPEM: [UInt8]? = nil,
        serverName: String? = nil,
        alpn: [String] = ["h2", "http/1.1"]
    ) {
        self.caPEM = caPEM
        self.insecureSkipVerify = insecureSkipVerify
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.serverName = serverName
        self.alpn = alpn
    }
}
