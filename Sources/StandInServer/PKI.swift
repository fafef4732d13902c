import Crypto
import Foundation
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The stand-in's private PKI: a self-signed P-256 CA, a server certificate for the configured names and a client
/// certificate (`CN=standin-client, O=system:masters`), all generated in memory at start-up.
struct StandInPKI: Sendable {
    var caPEM: String
    var serverCertificatePEM: String
    var serverKeyPEM: String
    var clientCertificatePEM: String
    var clientKeyPEM: String

    static let clientCommonName = "standin-client"
    static let clientOrganization = "system:masters"

    /// Signs further leaf certificates (client identities issued on demand by tests).
    /// The CA key's raw representation (the key type is not `Sendable`).
    private let caKeyRaw: Data
    private let caName: DistinguishedName
    private let caKeyID: ArraySlice<UInt8>
    private let notBefore: Date
    private let notAfter: Date

    /// - Parameter caDirectory: share the CA kept there (created if missing) instead of generating one.
    static func generate(serverNames: [String], caDirectory: String? = nil) throws -> StandInPKI {
        let ca = try caDirectory.map(StandInCA.loadOrCreate(in:)) ?? StandInCA.generate()
        let now = Date()
        let notBefore = now.addingTimeInterval(-3600)
        let notAfter = min(now.addingTimeInterval(60 * 60 * 24 * 365), ca.certificate.notValidAfter)
        let caKey = ca.key
        let caName = ca.certificate.subject
        let caKeyID = ca.keyID
        var pki = StandInPKI(
            caPEM: ca.certificatePEM, serverCertificatePEM: "", serverKeyPEM: "",
            clientCertificatePEM: "", clientKeyPEM: "", caKeyRaw: caKey.rawRepresentation, caName: caName, caKeyID: caKeyID,
            notBefore: notBefore, notAfter: notAfter)
        (pki.serverCertificatePEM, pki.serverKeyPEM) = try pki.issue(
            subject: try DistinguishedName { CommonName("standin-apiserver") }, usage: .serverAuth,
            sans: serverNames.map(subjectAlternativeName(for:)))
        (pki.clientCertificatePEM, pki.clientKeyPEM) = try pki.issueClientCertificate(
            commonName: clientCommonName, organization: clientOrganization)
        return pki
    }

    /// A new client certificate (PEM) and its P-256 key (PEM), signed by the CA: a further identity the stand-in
    /// accepts and reports by common name.
    func issueClientCertificate(commonName: String, organization: String?) throws -> (String, String) {
        try issue(
            subject: try DistinguishedName {
                if let organization { OrganizationName(organization) }
                CommonName(commonName)
            }, usage: .clientAuth, sans: [])
    }

    private func issue(
        subject: DistinguishedName, usage: ExtendedKeyUsage.Usage, sans: [GeneralName]
    ) throws -> (certificatePEM: String, keyPEM: String) {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let caKeyID = self.caKeyID
        let caKey = try P256.Signing.PrivateKey(rawRepresentation: caKeyRaw)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: caName,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: caKeyID)
                if !sans.isEmpty {
                    SubjectAlternativeNames(sans)
                }
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey)
        )
        return (try certificate.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
    }

    /// An IP literal becomes an iPAddress SAN, anything else a dNSName SAN.
    static func subjectAlternativeName(for name: String) -> GeneralName {
        if let bytes = ipAddressBytes(name) {
            return .ipAddress(.init(contentBytes: bytes[...]))
        }
        return .dnsName(name)
    }

    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// The subject common name of a DER certificate, if it has one.
    static func commonName(ofDER der: [UInt8]) -> String? {
        guard let certificate = try? Certificate(derEncoded: der) else { return nil }
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return String(describing: attribute.value)
            }
        }
        return nil
    }
}
