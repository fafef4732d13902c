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

/// The stand-in's certificate authority: generated per stand-in, or shared by several through a directory so that
/// one kubeconfig (one CA, one server name) verifies them all, as the apiservers of one cluster are.
struct StandInCA {
    static let fileName = "standin-ca.pem"

    let certificate: Certificate
    let key: P256.Signing.PrivateKey

    var certificatePEM: String { (try? certificate.serializeAsPEM().pemString).map { $0 + "\n" } ?? "" }
    var keyID: ArraySlice<UInt8> {
        (try? certificate.extensions.subjectKeyIdentifier)?.keyIdentifier ?? []
    }

    /// A new self-signed P-256 CA, valid from an hour ago for a year.
    static func generate() throws -> StandInCA {
        let now = Date()
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("proxyd stand-in")
            CommonName("standin-ca")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(60 * 60 * 24 * 365),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
        return StandInCA(certificate: certificate, key: key)
    }

    /// The CA kept in `directory/standin-ca.pem` (certificate and key), created there first if missing. Safe when
    /// several stand-ins start at once: the file is published with `link(2)`, which only one of them wins.
    static func loadOrCreate(in directory: String) throws -> StandInCA {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(fileName)
        if let existing = try load(path) { return existing }
        let ca = try generate()
        let temporary = path + ".\(getpid()).\(UUID().uuidString)"
        let contents = ca.certificatePEM + ca.key.pemRepresentation + "\n"
        guard FileManager.default.createFile(
            atPath: temporary, contents: Data(contents.utf8), attributes: [.posixPermissions: 0o600])
        else { throw StandInError.invalidObject("cannot write \(temporary)") }
        defer { unlink(temporary) }
        if link(temporary, path) == 0 { return ca }
        guard errno == EEXIST, let winner = try load(path) else {
            throw StandInError.invalidObject("cannot publish \(path): \(String(cString: strerror(errno)))")
        }
        return winner
    }

    private static func load(_ path: String) throws -> StandInCA? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        guard let keyStart = text.range(of: "-----BEGIN PRIVATE KEY-----") ?? text.range(of: "-----BEGIN EC PRIVATE KEY-----")
        else { throw StandInError.invalidObject("\(path) holds no private key") }
        let certificate = try Certificate(pemEncoded: String(text[..<keyStart.lowerBound]))
        let key = try P256.Signing.PrivateKey(pemRepresentation: String(text[keyStart.lowerBound...]))
        return StandInCA(certificate: certificate, key: key)
    }
}
