import COpenSSL

// Throwaway PKI for the TLS tests, built in memory with the OpenSSL C API: EC P-256 keys, X509 certificates.
// Test-only code; failures here are test bugs, so they trap.

/// Owns one EC P-256 key pair.
final class TestKey {
    let pkey: OpaquePointer

    init() {
        guard let pkey = CProxy_EVP_PKEY_generate_EC("P-256") else { fatalError("EC key generation failed") }
        self.pkey = pkey
    }

    deinit { EVP_PKEY_free(pkey) }

    /// PKCS#8 PEM of the private key.
    var pem: [UInt8] {
        withMemoryBIO { bio in PEM_write_bio_PrivateKey(bio, pkey, nil, nil, 0, nil, nil) }
    }
}

/// Owns one X509 certificate.
final class TestCertificate {
    let x509: OpaquePointer

    init(x509: OpaquePointer) { self.x509 = x509 }

    deinit { X509_free(x509) }

    var pem: [UInt8] {
        withMemoryBIO { bio in PEM_write_bio_X509(bio, x509) }
    }
}

/// A certificate with its key; `issue` makes children signed by it.
struct TestIdentity {
    let certificate: TestCertificate
    let key: TestKey

    var certificatePEM: [UInt8] { certificate.pem }
    var keyPEM: [UInt8] { key.pem }

    /// A self-signed root CA.
    static func rootCA(commonName: String = "proxyd test CA") -> TestIdentity {
        let key = TestKey()
        let cert = makeCertificate(commonName: commonName, key: key, issuer: nil, extensions: [
            (NID_basic_constraints, "critical,CA:TRUE"),
            (NID_key_usage, "critical,keyCertSign,cRLSign"),
            (NID_subject_key_identifier, "hash"),
        ])
        return TestIdentity(certificate: cert, key: key)
    }

    /// A self-signed *leaf* (not a CA): what `insecure-skip-tls-verify` clusters often have.
    static func selfSignedLeaf(commonName: String, subjectAltNames: String) -> TestIdentity {
        let key = TestKey()
        let cert = makeCertificate(commonName: commonName, key: key, issuer: nil, extensions: [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_subject_alt_name, subjectAltNames),
        ])
        return TestIdentity(certificate: cert, key: key)
    }

    /// An intermediate CA signed by `self`.
    func issueIntermediateCA(commonName: String) -> TestIdentity {
        let key = TestKey()
        let cert = Self.makeCertificate(commonName: commonName, key: key, issuer: self, extensions: [
            (NID_basic_constraints, "critical,CA:TRUE"),
            (NID_key_usage, "critical,keyCertSign,cRLSign"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
        ])
        return TestIdentity(certificate: cert, key: key)
    }

    /// A server leaf, e.g. `subjectAltNames: "DNS:localhost,IP:127.0.0.1,IP:::1"`.
    func issueServer(commonName: String = "localhost", subjectAltNames: String) -> TestIdentity {
        issueLeaf(commonName: commonName, extendedKeyUsage: "serverAuth", subjectAltNames: subjectAltNames)
    }

    /// A client leaf (CN is the Kubernetes user name).
    func issueClient(commonName: String) -> TestIdentity {
        issueLeaf(commonName: commonName, extendedKeyUsage: "clientAuth", subjectAltNames: nil)
    }

    private func issueLeaf(commonName: String, extendedKeyUsage: String, subjectAltNames: String?) -> TestIdentity {
        let key = TestKey()
        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, extendedKeyUsage),
            (NID_authority_key_identifier, "keyid:always"),
        ]
        if let subjectAltNames { extensions.append((NID_subject_alt_name, subjectAltNames)) }
        let cert = Self.makeCertificate(commonName: commonName, key: key, issuer: self, extensions: extensions)
        return TestIdentity(certificate: cert, key: key)
    }

    private static func makeCertificate(
        commonName: String, key: TestKey, issuer: TestIdentity?, extensions: [(Int32, String)]
    ) -> TestCertificate {
        guard let x509 = X509_new() else { fatalError("X509_new") }
        let certificate = TestCertificate(x509: x509)
        precondition(X509_set_version(x509, 2) == 1)
        precondition(ASN1_INTEGER_set(X509_get_serialNumber(x509), Int.random(in: 1...Int(Int32.max))) == 1)
        precondition(X509_gmtime_adj(X509_getm_notBefore(x509), -3600) != nil)
        precondition(X509_gmtime_adj(X509_getm_notAfter(x509), 86_400) != nil)
        precondition(X509_set_pubkey(x509, key.pkey) == 1)
        let name = X509_get_subject_name(x509)
        precondition(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0) == 1)
        let issuerCert = issuer?.certificate.x509 ?? x509
        precondition(X509_set_issuer_name(x509, X509_get_subject_name(issuerCert)) == 1)
        var v3 = X509V3_CTX()
        X509V3_set_ctx(&v3, issuerCert, x509, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else {
                fatalError("bad extension \(nid)=\(value)")
            }
            precondition(X509_add_ext(x509, ext, -1) == 1)
            X509_EXTENSION_free(ext)
        }
        let signer = issuer?.key.pkey ?? key.pkey
        precondition(X509_sign(x509, signer, EVP_sha256()) > 0)
        return certificate
    }
}

/// Runs `write` against a fresh memory BIO and returns what it wrote.
private func withMemoryBIO(_ write: (OpaquePointer) -> Int32) -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else { fatalError("BIO_new") }
    defer { BIO_free(bio) }
    precondition(write(bio) == 1, "PEM write failed")
    let count = CProxy_BIO_pending(bio)
    var out = [UInt8](repeating: 0, count: count)
    let n = out.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(count)) }
    precondition(Int(n) == count)
    return out
}
