/// A `Host` header value (or the authority of an absolute-form request-target), checked against RFC 9110 §7.2:
/// `uri-host [ ":" port ]`, where `uri-host` is an IP literal in brackets, an IPv4 address or a reg-name
/// (RFC 3986 §3.2.2: unreserved characters, `%XX` escapes and sub-delims) and `port` is digits.
///
/// Anything else (`localhost:8001@evil.example`, a second port, spaces, a path) is refused: RFC 9112 §3.2 asks for
/// a 400, and a Host that means one thing to proxyd and another to a browser is how rebinding tricks start.
struct HostAuthority: Equatable, Sendable {
    /// The host as sent, without the port: an IPv6 literal keeps its brackets, letters keep their case.
    var host: Substring
    /// The port as sent (digits), or `nil` when there was no `:`; `""` for `localhost:` (RFC 3986 allows it).
    var port: Substring?

    /// The port number, 80 when absent or empty (the default port of `http`, the proxy's scheme).
    var effectivePort: Int { port.flatMap { Int($0) } ?? 80 }

    /// Parses and checks `value`.
    /// - Returns: the parts, or why the value is not a valid `Host` (a phrase for a 400 body).
    static func parse(_ value: String) -> Result<HostAuthority, HostSyntaxError> {
        let text = Substring(value)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("an IPv6 literal without its \"]\"")) }
            let literal = text[...close]
            let inside = text[text.index(after: text.startIndex)..<close]
            guard inside.utf8.contains(UInt8(ascii: ":")), inside.utf8.allSatisfy(isIPv6LiteralByte),
                Resolver.isIPLiteral(String(inside))
            else {
                return .failure(.init("\(literal) is not an IPv6 address"))
            }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return .success(HostAuthority(host: literal, port: nil)) }
            guard rest.first == ":" else { return .failure(.init("unexpected text after the IPv6 address")) }
            return checkedPort(rest.dropFirst()).map { HostAuthority(host: literal, port: $0) }
        }
        var host = text
        var port: Substring?
        if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            let after = text[text.index(after: colon)...]
            if after.contains(":") { return .failure(.init("more than one port")) }
            if after.contains("@") || host.contains("@") { return .failure(.init("userinfo (\"@\") is not allowed")) }
            switch checkedPort(after) {
            case .success(let p): port = p
            case .failure(let error): return .failure(error)
            }
        }
        if let reason = regNameProblem(host) { return .failure(.init(reason)) }
        return .success(HostAuthority(host: host, port: port))
    }

    private static func checkedPort(_ digits: Substring) -> Result<Substring, HostSyntaxError> {
        guard digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .failure(.init("the port is not a number"))
        }
        guard digits.utf8.count <= 5, (Int(digits) ?? 0) <= 65535 else {
            return .failure(.init("the port is out of range"))
        }
        return .success(digits)
    }

    /// `nil` when `host` is a valid reg-name (IPv4 addresses are reg-names syntactically), else why not.
    private static func regNameProblem(_ host: Substring) -> String? {
        let bytes = Array(host.utf8)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.count, bytes[i + 1].isHexDigit, bytes[i + 2].isHexDigit else {
                    return "a \"%\" that is not a %XX escape"
                }
                i += 3
                continue
            }
            if b == UInt8(ascii: "@") { return "userinfo (\"@\") is not allowed" }
            guard PercentEncoding.isUnreservedOrSubDelim(b) else {
                if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") { return "a space" }
                if b < 0x20 || b >= 0x7F { return "a control or non-ASCII byte" }
                return "the character \"\(Character(Unicode.Scalar(b)))\""
            }
            i += 1
        }
        return nil
    }

    private static func isIPv6LiteralByte(_ b: UInt8) -> Bool {
        b.isHexDigit || b == UInt8(ascii: ":") || b == UInt8(ascii: ".")
    }
}

/// Why a `Host` value was refused.
struct HostSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    let reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}

extension UInt8 {
    var isHexDigit: Bool {
        switch self {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"):
            return true
        default:
            return false
        }
    }
}
