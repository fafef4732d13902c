internal import COpenSSL

/// Facts about the OpenSSL library proxyd runs with.
enum TLSLibrary {
    /// `OpenSSL 3.0.15 3 Sep 2024` → `3.0.15`: the version of the library loaded at run time.
    static var version: String {
        let text = String(cString: OpenSSL_version(OPENSSL_VERSION))
        let words = text.split(separator: " ")
        return words.count > 1 ? String(words[1]) : text
    }
}
