/// A parsed `proxy-url`: how every upstream connection reaches the apiserver when the cluster sets one.
///
/// Schemes are those client-go accepts (`parseProxyURL`): `http` and `https` (HTTP `CONNECT`, the latter over TLS to
/// the proxy) and `socks5` (RFC 1928; the target's DNS name is sent to the proxy, as golang.org/x/net/proxy does).
/// Default ports follow Go's `canonicalAddr`: 80, 443 and 1080. The user information, percent-decoded, is the
/// proxy's credential (Basic `Proxy-Authorization`, or RFC 1929 username/password); `description` never shows it.
public struct ProxyEndpoint: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case http, https, socks5
    }

    public var kind: Kind
    /// DNS name or IP literal, without brackets.
    public var host: String
    public var port: UInt16
    public var username: String?
    public var password: String?

    public init(kind: Kind, host: String, port: UInt16, username: String? = nil, password: String? = nil) {
        self.kind = kind
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// `host:port` (IPv6 bracketed), for messages: no credentials.
    public var authority: String { hostPort(host, port) }

    /// `scheme://host:port`, credentials left out.
    public var description: String { "\(kind.rawValue)://\(authority)" }

    /// Parses a `proxy-url` value.
    /// - Returns: the endpoint, or a reason that never contains the URL's user information.
    public static func parse(_ text: String) -> Result<ProxyEndpoint, ProxyURLError> {
        guard let separator = text.range(ofText: "://") else {
            return .failure(ProxyURLError("not a URL (want http, https or socks5)"))
        }
        let schemeText = text[..<separator.lowerBound].lowercased()
        guard let kind = Kind(rawValue: schemeText) else {
            return .failure(ProxyURLError("unsupported scheme \"\(schemeText)\", must be http, https, or socks5"))
        }
        let rest = text[separator.upperBound...]
        var authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var username: String?
        var password: String?
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let userPart: Substring
            if let colon = userInfo.firstIndex(of: ":") {
                userPart = userInfo[..<colon]
                guard let decoded = percentDecoded(userInfo[userInfo.index(after: colon)...]) else {
                    return .failure(ProxyURLError("invalid percent-encoding in the user information"))
                }
                password = decoded
            } else {
                userPart = userInfo
            }
            guard let decoded = percentDecoded(userPart) else {
                return .failure(ProxyURLError("invalid percent-encoding in the user information"))
            }
            username = decoded
        }
        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(ProxyURLError("missing \"]\" in IPv6 address"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else {
                    return .failure(ProxyURLError("unexpected characters after \"]\""))
                }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
            if host.contains(":") { return .failure(ProxyURLError("IPv6 address must be enclosed in brackets")) }
        } else {
            host = authority
        }
        if host.isEmpty { return .failure(ProxyURLError("missing host")) }
        var port: UInt16
        switch kind {
        case .http: port = 80
        case .https: port = 443
        case .socks5: port = 1080
        }
        if let portText, !portText.isEmpty {
            guard portText.allSatisfy({ ("0"..."9").contains($0) }), let value = UInt16(portText), value > 0 else {
                return .failure(ProxyURLError("invalid port"))
            }
            port = value
        }
        return .success(
            ProxyEndpoint(kind: kind, host: String(host), port: port, username: username, password: password))
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Why a `proxy-url` cannot be used. Never contains the URL's user information.
public struct ProxyURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// `host:port`, with an IPv6 literal bracketed (Go's `net.JoinHostPort`).
func hostPort(_ host: String, _ port: UInt16) -> String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}
