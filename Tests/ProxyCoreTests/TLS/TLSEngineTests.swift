import COpenSSL
import Testing
@testable import ProxyCore


func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(state: seed)
    var out = [UInt8]()
    out.reserveCapacity(count)
    while out.count < count {
        let word = rng.next()
        for shift in stride(from: 0, to: 64, by: 8) where out.count < count {
            out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
        }
    }
    return out
}

/// Client engine ↔ test server, exchanging buffers in memory. Server→client ciphertext is fed to the client in
/// random pieces of 1...maxChunk bytes, with `readPlaintext` after every piece.
final class TLSPair {
    let client: TLSEngine
    let server: TestTLSServer
    var clientReceived: [UInt8] = []
    var lastClientResult: TLSResult = .needsInput
    var readMax = 64 * 1024
    private var rng: SplitMix64
    private let maxChunk: Int

    init(client: TLSEngine, server: TestTLSServer, maxChunk: Int = .max, seed: UInt64 = 1) {
        self.client = client
        self.server = server
        self.maxChunk = maxChunk
        self.rng = SplitMix64(state: seed)
    }

    var clientFailure: TLSError? {
        if case .failed(let error) = lastClientResult { return error }
        return nil
    }

    /// Moves bytes until neither side has anything to send or the client failed.
    func run() {
        for _ in 0..<10_000 {
            var moved = false
            let toServer = client.takeCiphertext()
            if !toServer.isEmpty {
                moved = true
                server.feed(toServer)
            }
            server.drive()
            let toClient = server.takeCiphertext()
            if !toClient.isEmpty {
                moved = true
                var offset = 0
                while offset < toClient.count {
                    let size = min(Int.random(in: 1...max(1, min(maxChunk, toClient.count)), using: &rng),
                                   toClient.count - offset)
                    client.feed(ciphertext: toClient[offset..<(offset + size)])
                    offset += size
                    readClient()
                    if clientFailure != nil { return }
                }
            }
            if !moved { return }
        }
        Issue.record("TLSPair.run did not settle")
    }

    private func readClient() {
        repeat {
            lastClientResult = client.readPlaintext(into: &clientReceived, max: readMax)
        } while lastClientResult == .complete
    }
}

struct TLSFixture {
    let ca = TestIdentity.rootCA()
    let server: TestIdentity

    init(subjectAltNames: String = "DNS:localhost,IP:127.0.0.1,IP:::1") {
        server = ca.issueServer(subjectAltNames: subjectAltNames)
    }

    func configuration(
        alpn: [String] = ["h2", "http/1.1"], serverName: String? = nil, client: TestIdentity? = nil
    ) -> TLSConfiguration {
        TLSConfiguration(
            caPEM: ca.certificatePEM, clientCertificatePEM: client?.certificatePEM, clientKeyPEM: client?.keyPEM,
            serverName: serverName, alpn: alpn
        )
    }

    func connect(
        host: String = "localhost", configuration: TLSConfiguration? = nil, serverMaxVersion: Int32? = nil,
        requireClientCertificateFrom clientCA: TestIdentity? = nil, maxChunk: Int = .max, seed: UInt64 = 1
    ) throws -> TLSPair {
        let context = try TLSContext(configuration: configuration ?? self.configuration())
        let engine = try TLSEngine(context: context, host: host)
        let server = TestTLSServer(
            identity: server, requireClientCertificateFrom: clientCA, maxVersion: serverMaxVersion
        )
        let pair = TLSPair(client: engine, server: server, maxChunk: maxChunk, seed: seed)
        pair.lastClientResult = engine.startHandshake()
        pair.run()
        return pair
    }
}

@Suite struct TLSEngineTests {
    @Test func handshakeNegotiatesH2() throws {
        let pair = try TLSFixture().connect()
        #expect(pair.clientFailure == nil)
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.server.handshakeDone)
        #expect(pair.client.negotiatedALPN == "h2")
        #expect(pair.server.selectedALPN == "h2")
        #expect(pair.server.serverNameIndication == "localhost")
        #expect(pair.server.negotiatedVersion == "TLSv1.3")
        #expect(pair.lastClientResult == .needsInput)
    }

    @Test func alpnHTTP1OnlyIsSelected() throws {
        let fixture = TLSFixture()
        let pair = try fixture.connect(configuration: fixture.configuration(alpn: ["http/1.1"]))
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.client.negotiatedALPN == "http/1.1")
    }

    @Test func noALPNOfferedMeansNoneNegotiated() throws {
        let fixture = TLSFixture()
        let pair = try fixture.connect(configuration: fixture.configuration(alpn: []))
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.client.negotiatedALPN == nil)
    }

    @Test func tls12HandshakeAndData() throws {
        let pair = try TLSFixture().connect(serverMaxVersion: CProxy_TLS1_2_VERSION())
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.server.negotiatedVersion == "TLSv1.2")
        #expect(pair.client.negotiatedALPN == "h2")
        #expect(pair.client.writePlaintext(ArraySlice("ping".utf8)) == .complete)
        pair.server.write(Array("pong".utf8))
        pair.run()
        #expect(pair.server.received == Array("ping".utf8))
        #expect(pair.clientReceived == Array("pong".utf8))
    }

    @Test(arguments: [(1, UInt64(11), 64 * 1024), (7, 12, 256 * 1024), (1500, 13, 1 << 20), (70_000, 14, 1 << 20)])
    func dataBothWaysWithArbitraryChunking(maxChunk: Int, seed: UInt64, size: Int) throws {
        let pair = try TLSFixture().connect(maxChunk: maxChunk, seed: seed)
        try #require(pair.client.isHandshakeComplete)
        let up = randomBytes(size, seed: seed)
        let down = randomBytes(size, seed: seed &+ 100)
        #expect(pair.client.writePlaintext(up[...]) == .complete)
        pair.server.write(down)
        pair.run()
        #expect(pair.clientFailure == nil)
        #expect(pair.server.failure == nil)
        #expect(pair.server.received.count == up.count)
        #expect(pair.server.received == up)
        #expect(pair.clientReceived.count == down.count)
        #expect(pair.clientReceived == down)
    }

    /// The socket's read buffer goes to OpenSSL without a copy and is let go of once read (so the loop reuses it),
    /// and one pass decrypts a whole 64 KiB read into the plaintext buffer without growing it.
    @Test func fedBuffersAreReadInPlaceAndReleased() throws {
        let pair = try TLSFixture().connect()
        let down = randomBytes(600_000, seed: 9)
        pair.server.write(down)
        pair.server.drive()
        let wire = pair.server.takeCiphertext()
        var received: [UInt8] = []
        var offset = 0
        while offset < wire.count {
            let size = min(65_536, wire.count - offset)
            var read = ByteBuffer(capacity: 65_536)
            read.writeBytes(wire[offset..<(offset + size)])
            offset += size
            pair.client.feed(ciphertext: read)
            var plaintext = ByteBuffer()
            let result = pair.client.readPlaintext(into: &plaintext, max: .max)
            #expect(result == .needsInput)
            let storage = plaintext.storageCapacity
            #expect(storage < 65_536 + 2 * 17 * 1024, "one reservation, not a doubling: \(storage)")
            received += plaintext.readableBytesArray
            let released = read.holdsStorageAlone()
            #expect(released)
        }
        #expect(received == down)
    }

    @Test func readPlaintextHonoursMaxAndKeepsTheRestForTheNextCall() throws {
        let pair = try TLSFixture().connect()
        pair.readMax = 1000
        let down = randomBytes(100_000, seed: 5)
        pair.server.write(down)
        // One feed, then reads of at most 1000 bytes: `.complete` until drained, then `.needsInput`.
        let ciphertext = pair.server.takeCiphertext()
        pair.client.feed(ciphertext: ciphertext[...])
        var received: [UInt8] = []
        var calls = 0
        while true {
            let before = received.count
            let result = pair.client.readPlaintext(into: &received, max: 1000)
            #expect(received.count - before <= 1000)
            calls += 1
            if result != .complete {
                #expect(result == .needsInput)
                break
            }
        }
        #expect(received == down)
        #expect(calls >= 100)
    }

    @Test func writeBeforeHandshakeIsQueuedAndSentAfterIt() throws {
        let fixture = TLSFixture()
        let context = try TLSContext(configuration: fixture.configuration())
        let engine = try TLSEngine(context: context, host: "localhost")
        // No startHandshake: writing drives it.
        #expect(engine.writePlaintext(ArraySlice("early".utf8)) == .needsInput)
        #expect(engine.pendingPlaintextByteCount == 5)
        #expect(engine.writePlaintext(ArraySlice(" bird".utf8)) == .needsInput)
        let pair = TLSPair(client: engine, server: TestTLSServer(identity: fixture.server))
        pair.run()
        #expect(engine.isHandshakeComplete)
        #expect(engine.pendingPlaintextByteCount == 0)
        #expect(pair.server.received == Array("early bird".utf8))
    }

    @Test func wrongCAFailsWithReadableReason() throws {
        let fixture = TLSFixture()
        let otherCA = TestIdentity.rootCA(commonName: "some other CA")
        let config = TLSConfiguration(caPEM: otherCA.certificatePEM)
        let pair = try fixture.connect(configuration: config)
        let error = try #require(pair.clientFailure)
        #expect(error.kind == .certificateVerificationFailed)
        #expect(error.reason == "certificate verify failed: unable to get local issuer certificate")
        #expect(error.description.contains("certificate verify failed"))
        #expect(!pair.client.isHandshakeComplete)
        // Fatal: later calls report the same error, and shutdown sends nothing.
        #expect(pair.client.writePlaintext(ArraySlice("x".utf8)) == .failed(error))
        // The fatal alert OpenSSL queued (unknown_ca) is still to be sent; after it, shutdown adds nothing.
        #expect(pair.client.takeCiphertext() == [21, 3, 3, 0, 2, 2, 48])
        pair.client.shutdown()
        #expect(pair.client.takeCiphertext().isEmpty)
    }

    @Test func hostnameMismatchFails() throws {
        let pair = try TLSFixture().connect(host: "kubernetes.example.com")
        let error = try #require(pair.clientFailure)
        #expect(error.kind == .certificateVerificationFailed)
        #expect(error.reason.hasPrefix("certificate verify failed: hostname mismatch"))
        #expect(error.reason.contains("kubernetes.example.com"))
        #expect(error.verifyResult == Int(X509_V_ERR_HOSTNAME_MISMATCH))
    }

    @Test func wildcardCertificateMatchesOneLabelOnly() throws {
        let fixture = TLSFixture(subjectAltNames: "DNS:*.example.com")
        #expect(try fixture.connect(host: "api.example.com").client.isHandshakeComplete)
        #expect(try fixture.connect(host: "a.b.example.com").clientFailure != nil)
    }

    @Test func ipSANIdentityPasses() throws {
        let fixture = TLSFixture()
        let v4 = try fixture.connect(host: "127.0.0.1")
        #expect(v4.clientFailure == nil)
        #expect(v4.client.isHandshakeComplete)
        #expect(v4.server.serverNameIndication == nil)  // no SNI for IP literals
        let v6 = try fixture.connect(host: "[::1]")
        #expect(v6.client.isHandshakeComplete)
        #expect(v6.server.serverNameIndication == nil)
    }

    @Test func wrongIPFails() throws {
        let pair = try TLSFixture().connect(host: "127.0.0.2")
        let error = try #require(pair.clientFailure)
        #expect(error.kind == .certificateVerificationFailed)
        #expect(error.reason.hasPrefix("certificate verify failed: IP address mismatch"))
        #expect(error.reason.contains("127.0.0.2"))
    }

    @Test func dnsNameDoesNotMatchAnIPSAN() throws {
        // A cert with only an IP SAN must not pass for a name that happens to look similar.
        let fixture = TLSFixture(subjectAltNames: "IP:10.0.0.1")
        #expect(try fixture.connect(host: "10.0.0.1.nip.io").clientFailure != nil)
        #expect(try fixture.connect(host: "10.0.0.1").clientFailure == nil)
    }

    @Test func serverNameOverridesHostForSNIAndCheck() throws {
        let fixture = TLSFixture(subjectAltNames: "DNS:kubernetes.default.svc")
        let pair = try fixture.connect(
            host: "127.0.0.1", configuration: fixture.configuration(serverName: "kubernetes.default.svc")
        )
        #expect(pair.clientFailure == nil)
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.server.serverNameIndication == "kubernetes.default.svc")
        #expect(try fixture.connect(host: "127.0.0.1").clientFailure != nil)
    }

    @Test func selfSignedFailsVerificationButPassesWhenInsecure() throws {
        let selfSigned = TestIdentity.selfSignedLeaf(commonName: "apiserver", subjectAltNames: "DNS:apiserver")
        let strict = try TLSContext(configuration: TLSConfiguration(caPEM: nil))  // system roots
        let strictPair = TLSPair(
            client: try TLSEngine(context: strict, host: "apiserver"), server: TestTLSServer(identity: selfSigned)
        )
        strictPair.lastClientResult = strictPair.client.startHandshake()
        strictPair.run()
        let error = try #require(strictPair.clientFailure)
        #expect(error.reason.hasPrefix("certificate verify failed: self"))
        #expect(error.reason.contains("signed certificate"))

        let insecure = try TLSContext(configuration: TLSConfiguration(insecureSkipVerify: true))
        // Even the host name is not checked when insecure.
        let pair = TLSPair(
            client: try TLSEngine(context: insecure, host: "not-the-name"), server: TestTLSServer(identity: selfSigned)
        )
        pair.lastClientResult = pair.client.startHandshake()
        pair.run()
        #expect(pair.clientFailure == nil)
        #expect(pair.client.isHandshakeComplete)
        #expect(pair.client.negotiatedALPN == "h2")
    }

    @Test func clientCertificateIsPresentedAndVerifiedByServer() throws {
        let fixture = TLSFixture()
        let alice = fixture.ca.issueClient(commonName: "alice")
        let pair = try fixture.connect(
            configuration: fixture.configuration(client: alice), requireClientCertificateFrom: fixture.ca
        )
        #expect(pair.clientFailure == nil)
        #expect(pair.server.failure == nil)
        #expect(pair.server.handshakeDone)
        #expect(pair.server.clientCertificateCommonName == "alice")
    }

    @Test func clientCertificateChainIsSent() throws {
        let fixture = TLSFixture()
        let intermediate = fixture.ca.issueIntermediateCA(commonName: "client intermediate")
        let bob = intermediate.issueClient(commonName: "bob")
        // The server trusts only the root: the client must send the intermediate after its leaf.
        let config = TLSConfiguration(
            caPEM: fixture.ca.certificatePEM,
            clientCertificatePEM: bob.certificatePEM + intermediate.certificatePEM, clientKeyPEM: bob.keyPEM
        )
        let pair = try fixture.connect(configuration: config, requireClientCertificateFrom: fixture.ca)
        #expect(pair.server.failure == nil)
        #expect(pair.server.clientCertificateCommonName == "bob")
    }

    @Test func missingClientCertificateIsReportedReadably() throws {
        let fixture = TLSFixture()
        let pair = try fixture.connect(requireClientCertificateFrom: fixture.ca)
        // TLS 1.3: the client finishes first, then reads the server's alert.
        let error = try #require(pair.clientFailure)
        #expect(error.reason.contains("certificate required"))
        #expect(pair.server.failure != nil)
    }

    @Test func closeNotifyFromServerIsClosed() throws {
        let pair = try TLSFixture().connect()
        pair.server.write(Array("last words".utf8))
        pair.server.shutdown()
        pair.run()
        #expect(pair.clientReceived == Array("last words".utf8))
        #expect(pair.lastClientResult == .closed)
        var more: [UInt8] = []
        #expect(pair.client.readPlaintext(into: &more, max: 100) == .closed)
        // Answering close_notify is still allowed, once.
        pair.client.shutdown()
        #expect(!pair.client.takeCiphertext().isEmpty)
        pair.client.shutdown()
        #expect(pair.client.takeCiphertext().isEmpty)
    }

    @Test func clientShutdownSendsCloseNotifyOnce() throws {
        let pair = try TLSFixture().connect()
        pair.client.shutdown()
        pair.run()
        #expect(pair.server.receivedCloseNotify)
        #expect(pair.client.writePlaintext(ArraySlice("late".utf8)) == .closed)
        pair.client.shutdown()
        #expect(pair.client.takeCiphertext().isEmpty)
    }

    @Test func shutdownBeforeHandshakeSendsNothing() throws {
        let fixture = TLSFixture()
        let engine = try TLSEngine(context: TLSContext(configuration: fixture.configuration()), host: "localhost")
        #expect(engine.startHandshake() == .needsInput)
        #expect(!engine.takeCiphertext().isEmpty)  // ClientHello
        engine.shutdown()
        #expect(engine.takeCiphertext().isEmpty)
    }

    @Test func garbageFromPeerFailsTheHandshake() throws {
        let fixture = TLSFixture()
        let engine = try TLSEngine(context: TLSContext(configuration: fixture.configuration()), host: "localhost")
        _ = engine.startHandshake()
        engine.feed(ciphertext: ArraySlice("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
        var out: [UInt8] = []
        let result = engine.readPlaintext(into: &out, max: 100)
        guard case .failed(let error) = result else {
            Issue.record("expected failure, got \(result)")
            return
        }
        #expect(error.kind == .handshakeFailed)
        #expect(!error.openSSLErrors.isEmpty)
        #expect(engine.startHandshake() == .failed(error))
    }

    @Test func invalidHostIsRejected() throws {
        let context = try TLSContext(configuration: TLSFixture().configuration())
        #expect(throws: TLSError.self) { try TLSEngine(context: context, host: "") }
        #expect(throws: TLSError.self) { try TLSEngine(context: context, host: "[]") }
    }
}
