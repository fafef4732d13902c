import Testing
@testable import ProxyCore

@Suite struct TLSContextTests {
    @Test func defaultConfigurationUsesSystemRoots() throws {
        _ = try TLSContext(configuration: TLSConfiguration())
    }

    @Test func everyCertificateInTheCABundleIsTrusted() throws {
        let fixture = TLSFixture()
        let unrelated = TestIdentity.rootCA(commonName: "unrelated")
        // The real CA is second in the bundle, after some text and an unrelated CA.
        let bundle = Array("# cluster CAs\n".utf8) + unrelated.certificatePEM + fixture.ca.certificatePEM
        let pair = try fixture.connect(configuration: TLSConfiguration(caPEM: bundle))
        #expect(pair.clientFailure == nil)
        #expect(pair.client.isHandshakeComplete)
    }

    @Test func duplicateCAInBundleIsAccepted() throws {
        let ca = TestIdentity.rootCA()
        _ = try TLSContext(configuration: TLSConfiguration(caPEM: ca.certificatePEM + ca.certificatePEM))
    }

    @Test func caBundleWithoutCertificatesIsAnError() {
        let error = #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(caPEM: Array("not a pem".utf8)))
        }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.reason == "CA bundle contains no PEM certificate")
    }

    @Test func corruptCertificateInBundleIsNamed() {
        let ca = TestIdentity.rootCA()
        let corrupt = Array("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)
        let error = #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(caPEM: ca.certificatePEM + corrupt))
        }
        #expect(error?.reason == "CA bundle: certificate #2 could not be parsed")
        #expect(error?.openSSLErrors.isEmpty == false)
    }

    @Test func clientKeyNotMatchingCertificateIsAClearError() {
        let ca = TestIdentity.rootCA()
        let alice = ca.issueClient(commonName: "alice")
        let someoneElse = TestKey()
        let error = #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(
                caPEM: ca.certificatePEM, clientCertificatePEM: alice.certificatePEM, clientKeyPEM: someoneElse.pem
            ))
        }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.reason == "client certificate and key do not match")
    }

    @Test func clientCertificateWithoutKeyIsAnError() {
        let alice = TestIdentity.rootCA().issueClient(commonName: "alice")
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(clientCertificatePEM: alice.certificatePEM))
        }
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(clientKeyPEM: alice.keyPEM))
        }
    }

    @Test func garbageClientKeyIsAnError() {
        let alice = TestIdentity.rootCA().issueClient(commonName: "alice")
        let error = #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(
                clientCertificatePEM: alice.certificatePEM, clientKeyPEM: Array("nope".utf8)
            ))
        }
        #expect(error?.reason.hasPrefix("client key:") == true)
    }

    @Test func invalidALPNNameIsRejected() throws {
        #expect(throws: TLSError.self) { try TLSContext(configuration: TLSConfiguration(alpn: ["h2", ""])) }
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSConfiguration(alpn: [String(repeating: "x", count: 256)]))
        }
        #expect(try TLSContext.alpnWireFormat(["h2", "http/1.1"]) == [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8))
    }

    @Test func errorDescriptionCarriesKindReasonAndStack() {
        let error = TLSError(
            kind: .handshakeFailed, reason: "sslv3 alert handshake failure",
            openSSLErrors: OpenSSLErrorStack(messages: ["error:0A000410:SSL routines::sslv3 alert handshake failure"],
                                             reasons: ["sslv3 alert handshake failure"])
        )
        #expect(error.description
            == "TLS handshake failed: sslv3 alert handshake failure [error:0A000410:SSL routines::sslv3 alert handshake failure]")
    }
}
