import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ProxyCore
import Testing
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `TLSEngine` against an independent TLS stack: a NIOSSL (BoringSSL) echo server on 127.0.0.1:0, with certificates
// made by swift-certificates + swift-crypto. The engine is driven over a plain blocking socket, so nothing of
// proxyd's own event loop is involved.

// MARK: - Certificates (swift-certificates)

private struct InteropPKI {
    let caKey = P256.Signing.PrivateKey()
    let ca: Certificate

    init(commonName: String = "proxyd interop CA") throws {
        let name = try DistinguishedName { CommonName(commonName) }
        ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: Date() - 3600, notValidAfter: Date() + 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(caKey)
        )
    }

    var caPEM: [UInt8] { get throws { Array(try ca.serializeAsPEM().pemString.utf8) } }

    func issue(
        commonName: String, dnsNames: [String] = [], ipv4: [[UInt8]] = [], usage: ExtendedKeyUsage.Usage
    ) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let subjectAltNames = Self.subjectAltNames(dnsNames: dnsNames, ipv4: ipv4)
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: Date() - 3600, notValidAfter: Date() + 86_400,
            issuer: ca.subject, subject: try DistinguishedName { CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                if let subjectAltNames { subjectAltNames }
            },
            issuerPrivateKey: .init(caKey)
        )
        return (certificate, key)
    }

    /// subjectAltName as raw DER (dNSName [2], iPAddress [7]); keeps this file free of a SwiftASN1 import.
    private static func subjectAltNames(dnsNames: [String], ipv4: [[UInt8]]) -> Certificate.Extension? {
        var names: [UInt8] = []
        for dns in dnsNames { names += [0x82, UInt8(dns.utf8.count)] + Array(dns.utf8) }
        for ip in ipv4 { names += [0x87, UInt8(ip.count)] + ip }
        guard !names.isEmpty else { return nil }
        precondition(names.count < 128)
        return Certificate.Extension(
            oid: .X509ExtensionID.subjectAlternativeName, critical: false, value: ([0x30, UInt8(names.count)] + names)[...]
        )
    }
}

private func pem(_ certificate: Certificate) throws -> [UInt8] { Array(try certificate.serializeAsPEM().pemString.utf8) }
private func pem(_ key: P256.Signing.PrivateKey) -> [UInt8] { Array(key.pemRepresentation.utf8) }

// MARK: - NIOSSL echo server

/// What the server side saw, written on NIO's loop and read by the test thread.
private final class ServerObservations: @unchecked Sendable {  // all state behind `lock`
    private let lock = NSLock()
    private var _alpn: [String?] = []
    private var _clientCertificates: [[UInt8]] = []
    private var _errors: [String] = []

    func handshake(alpn: String?, clientCertificateDER: [UInt8]?) {
        lock.withLock {
            _alpn.append(alpn)
            if let clientCertificateDER { _clientCertificates.append(clientCertificateDER) }
        }
    }
    func error(_ text: String) { lock.withLock { _errors.append(text) } }
    var alpn: [String?] { lock.withLock { _alpn } }
    var clientCertificates: [[UInt8]] { lock.withLock { _clientCertificates } }
    var errors: [String] { lock.withLock { _errors } }
}

/// The string inside an optional / one-element payload tuple, as reflection presents an enum payload.
private func firstString(in value: Any) -> String? {
    if let string = value as? String { return string }
    let mirror = Mirror(reflecting: value)
    guard mirror.displayStyle == .optional || mirror.displayStyle == .tuple else { return nil }
    return mirror.children.first.flatMap { firstString(in: $0.value) }
}

private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = NIOCore.ByteBuffer
    typealias OutboundOut = NIOCore.ByteBuffer
    private let observations: ServerObservations

    init(observations: ServerObservations) { self.observations = observations }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // NIOTLS's `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)`, read by reflection: NIOTLS is not a declared
        // dependency of this target (Package.swift is fixed), and the case name plus payload is all we need.
        if let completed = Mirror(reflecting: event).children.first, completed.label == "handshakeCompleted" {
            let negotiated = firstString(in: completed.value)
            let peer = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
            observations.handshake(alpn: negotiated, clientCertificateDER: try? peer?.toDERBytes())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        observations.error("\(error)")
        context.close(promise: nil)
    }
}

private final class NIOSSLEchoServer {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let observations = ServerObservations()
    private var channel: (any Channel)?

    init(
        certificate: Certificate, key: P256.Signing.PrivateKey, alpn: [String] = ["h2", "http/1.1"],
        requireClientCertificateFrom clientCA: Certificate? = nil
    ) throws {
        var tls = NIOSSL.TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: try pem(certificate), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: pem(key), format: .pem))
        )
        tls.applicationProtocols = alpn
        if let clientCA {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: try pem(clientCA), format: .pem)])
        }
        let sslContext = try NIOSSLContext(configuration: tls)
        let observations = self.observations
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                        try channel.pipeline.syncOperations.addHandler(EchoHandler(observations: observations))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var port: UInt16 { UInt16(channel?.localAddress?.port ?? 0) }

    func stop() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }
}

// MARK: - Client: TLSEngine over a blocking socket

/// The simple loop: send `takeCiphertext()`, read the socket, feed, read plaintext, repeat.
private final class EngineDriver {
    let engine: TLSEngine
    let socket: LoopbackSocket
    var received: [UInt8] = []
    var last: TLSResult = .needsInput
    var sawEOF = false

    init(configuration: ProxyCore.TLSConfiguration, host: String, port: UInt16) throws {
        engine = try TLSEngine(context: TLSContext(configuration: configuration), host: host)
        socket = try LoopbackSocket(port: Int(port))
    }

    var failure: TLSError? {
        if case .failed(let error) = last { return error }
        return nil
    }

    func flush() throws {
        let out = engine.takeCiphertext()
        if !out.isEmpty { try socket.send(out) }
    }

    /// Runs until `done`, a failure, close_notify or EOF.
    func pump(until done: () -> Bool) throws {
        try flush()
        while !done() {
            if failure != nil || last == .closed { return }
            let bytes = try socket.receive()
            if bytes.isEmpty {
                sawEOF = true
                return
            }
            engine.feed(ciphertext: bytes[...])
            repeat {
                last = engine.readPlaintext(into: &received, max: 64 * 1024)
            } while last == .complete
            try flush()  // handshake messages, alerts
        }
    }

    func handshake() throws {
        last = engine.startHandshake()
        try pump { engine.isHandshakeComplete }
    }

    func echo(_ bytes: [UInt8]) throws {
        let target = received.count + bytes.count
        last = engine.writePlaintext(bytes[...])
        try pump { received.count >= target }
    }
}

// MARK: - Tests

@Suite struct TLSEngineNIOSSLTests {
    private let pki: InteropPKI
    private let serverIdentity: (certificate: Certificate, key: P256.Signing.PrivateKey)

    init() throws {
        pki = try InteropPKI()
        serverIdentity = try pki.issue(
            commonName: "localhost", dnsNames: ["localhost"], ipv4: [[127, 0, 0, 1]], usage: .serverAuth
        )
    }

    private func startServer(
        alpn: [String] = ["h2", "http/1.1"], requireClientCertificateFrom clientCA: Certificate? = nil
    ) throws -> NIOSSLEchoServer {
        try NIOSSLEchoServer(
            certificate: serverIdentity.certificate, key: serverIdentity.key, alpn: alpn,
            requireClientCertificateFrom: clientCA
        )
    }

    @Test func handshakeSelectsH2AndEchoes() throws {
        let server = try startServer()
        defer { server.stop() }
        let driver = try EngineDriver(
            configuration: .init(caPEM: try pki.caPEM, alpn: ["h2", "http/1.1"]), host: "localhost", port: server.port
        )
        try driver.handshake()
        #expect(driver.failure == nil)
        #expect(driver.engine.isHandshakeComplete)
        #expect(driver.engine.negotiatedALPN == "h2")
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try driver.echo(payload)
        #expect(driver.failure == nil)
        #expect(driver.received == payload)
        try driver.echo(Array("small".utf8))
        #expect(driver.received.suffix(5) == Array("small".utf8))
        #expect(server.observations.alpn == ["h2"])
        driver.engine.shutdown()
        try driver.flush()
    }

    @Test func http11IsSelectedWhenOnlyItIsOffered() throws {
        let server = try startServer()
        defer { server.stop() }
        let driver = try EngineDriver(
            configuration: .init(caPEM: try pki.caPEM, alpn: ["http/1.1"]), host: "localhost", port: server.port
        )
        try driver.handshake()
        #expect(driver.engine.negotiatedALPN == "http/1.1")
        try driver.echo(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(driver.received == Array("GET / HTTP/1.1\r\n\r\n".utf8))
    }

    @Test func http11IsSelectedWhenServerHasNoH2() throws {
        let server = try startServer(alpn: ["http/1.1"])
        defer { server.stop() }
        let driver = try EngineDriver(configuration: .init(caPEM: try pki.caPEM), host: "localhost", port: server.port)
        try driver.handshake()
        #expect(driver.engine.negotiatedALPN == "http/1.1")
    }

    @Test func ipAddressIdentityPasses() throws {
        let server = try startServer()
        defer { server.stop() }
        let driver = try EngineDriver(configuration: .init(caPEM: try pki.caPEM), host: "127.0.0.1", port: server.port)
        try driver.handshake()
        #expect(driver.failure == nil)
        #expect(driver.engine.isHandshakeComplete)
    }

    @Test func hostnameMismatchFails() throws {
        let server = try startServer()
        defer { server.stop() }
        let driver = try EngineDriver(
            configuration: .init(caPEM: try pki.caPEM), host: "api.example.com", port: server.port
        )
        try driver.handshake()
        let error = try #require(driver.failure)
        #expect(error.kind == .certificateVerificationFailed)
        #expect(error.reason.contains("hostname mismatch"))
    }

    @Test func ipAddressMismatchFails() throws {
        let server = try startServer()
        defer { server.stop() }
        // We connect to 127.0.0.1 but claim the server is 127.0.0.2.
        let driver = try EngineDriver(configuration: .init(caPEM: try pki.caPEM), host: "127.0.0.2", port: server.port)
        try driver.handshake()
        let error = try #require(driver.failure)
        #expect(error.reason.contains("IP address mismatch"))
    }

    @Test func untrustedServerFails() throws {
        let server = try startServer()
        defer { server.stop() }
        let otherCA = try InteropPKI(commonName: "not the cluster CA")
        let driver = try EngineDriver(configuration: .init(caPEM: try otherCA.caPEM), host: "localhost", port: server.port)
        try driver.handshake()
        let error = try #require(driver.failure)
        #expect(error.kind == .certificateVerificationFailed)
        #expect(error.reason.hasPrefix("certificate verify failed:"))
    }

    @Test func clientCertificateIsVerifiedByNIOSSL() throws {
        let server = try startServer(requireClientCertificateFrom: pki.ca)
        defer { server.stop() }
        let alice = try pki.issue(commonName: "alice", usage: .clientAuth)
        let driver = try EngineDriver(
            configuration: .init(
                caPEM: try pki.caPEM, clientCertificatePEM: try pem(alice.certificate), clientKeyPEM: pem(alice.key)
            ),
            host: "localhost", port: server.port
        )
        try driver.handshake()
        try driver.echo(Array("hello mTLS".utf8))
        #expect(driver.failure == nil)
        #expect(driver.received == Array("hello mTLS".utf8))
        let expectedDER = try NIOSSLCertificate(bytes: try pem(alice.certificate), format: .pem).toDERBytes()
        #expect(server.observations.clientCertificates == [expectedDER])
    }

    @Test func missingClientCertificateIsRejectedByNIOSSL() throws {
        let server = try startServer(requireClientCertificateFrom: pki.ca)
        defer { server.stop() }
        let driver = try EngineDriver(configuration: .init(caPEM: try pki.caPEM), host: "localhost", port: server.port)
        try driver.handshake()
        // TLS 1.3: our side finishes first; the server's alert arrives with the next read.
        if driver.failure == nil && !driver.sawEOF {
            try driver.echo(Array("x".utf8))
        }
        #expect(driver.failure != nil || driver.sawEOF)
        if let error = driver.failure {
            #expect(error.reason.contains("certificate"))
        }
        #expect(server.observations.clientCertificates.isEmpty)
    }

    @Test func clientCertificateFromAnotherCAIsRejected() throws {
        let server = try startServer(requireClientCertificateFrom: pki.ca)
        defer { server.stop() }
        let stranger = try InteropPKI(commonName: "stranger CA")
        let mallory = try stranger.issue(commonName: "mallory", usage: .clientAuth)
        let driver = try EngineDriver(
            configuration: .init(
                caPEM: try pki.caPEM, clientCertificatePEM: try pem(mallory.certificate), clientKeyPEM: pem(mallory.key)
            ),
            host: "localhost", port: server.port
        )
        try driver.handshake()
        if driver.failure == nil && !driver.sawEOF {
            try driver.echo(Array("x".utf8))
        }
        #expect(driver.failure != nil || driver.sawEOF)
        #expect(driver.received.isEmpty)
    }
}
