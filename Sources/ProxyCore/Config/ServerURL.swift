/// A parsed `server` (or `--server`) value: `scheme://host[:port][/path][?query][#fragment]`.
///
/// Query and fragment are dropped (client-go does the same). A value without "://" (`localhost:8080`) gets
/// `https://` when TLS settings are present and `http://` otherwise, like client-go's `DefaultServerURL`.
struct ServerURL: Equatable {
    var scheme: String
    /// Without brackets.
    var host: String
    var port: UInt16
    /// The host[:port] as written (IPv6 bracketed).
    var authority: String
    /// Path without trailing "/", "" for none or "/".
    var basePath: String

    /// - Returns: The parsed URL, or the reason it is invalid (never containing user information from the URL).
    static func parse(_ raw: String, defaultTLS: Bool) -> Result<ServerURL, Reason> {
        var text = Substring(raw)
        let scheme: String
        if let separator = text.range(ofText: "://") {
            scheme = text[..<separator.lowerBound].lowercased()
            text = text[separator.upperBound...]
        } else {
            scheme = defaultTLS ? "https" : "http"
        }
        let defaultPort: UInt16
        switch scheme {
        case "https": defaultPort = 443
        case "http": defaultPort = 80
        default: return .failure(Reason("unsupported scheme \"\(scheme)\" (want https or http)"))
        }
        let authorityEnd = text.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? text.endIndex
        let authority = text[..<authorityEnd]
        var rest = text[authorityEnd...]
        if let queryStart = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<queryStart] }

        if authority.contains("@") { return .failure(Reason("must not contain user information")) }
        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(Reason("missing \"]\" in IPv6 address"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(Reason("unexpected characters after \"]\"")) }
                portText = after.dropFirst()
            }
            guard host.contains(":") else { return .failure(Reason("brackets are only for IPv6 addresses")) }
        } else {
            let colons = authority.filter { $0 == ":" }.count
            if colons > 1 { return .failure(Reason("IPv6 address must be enclosed in brackets")) }
            if let colon = authority.firstIndex(of: ":") {
                host = authority[..<colon]
                portText = authority[authority.index(after: colon)...]
            } else {
                host = authority
            }
        }
        if host.isEmpty { return .failure(Reason("missing host")) }
        var port = defaultPort
        if let portText, !portText.isEmpty {
            guard portText.allSatisfy(\.isASCIIDigit), let value = UInt16(portText), value > 0 else {
                return .failure(Reason("invalid port"))
            }
            port = value
        }
        var path = rest
        while path.hasSuffix("/") { path = path.dropLast() }
        return .success(
            ServerURL(
                scheme: scheme, host: String(host), port: port, authority: String(authority),
                basePath: String(path)))
    }

    struct Reason: Error, Equatable {
        let text: String
        init(_ text: String) { self.text = text }
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
