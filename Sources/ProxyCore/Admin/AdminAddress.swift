/// Where `--metrics-bind-address` or `--healthz-bind-address` listens, as the Kubernetes components spell it
/// (`127.0.0.1:10249`, `[::1]:10256`, `0.0.0.0:10249`), plus proxyd's forms: a port alone (or `:port`) listens on
/// loopback, `unix:/path` (or an absolute path) on a unix socket with mode 0700. Empty or `0` turns it off.
public enum AdminAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// - Returns: nil when the listener is turned off (`""`, `"0"`).
    /// - Throws: `AdminAddressError` naming the flag and what is wrong.
    public static func parse(_ text: String, flag: String) throws(AdminAddressError) -> AdminAddress? {
        if text.isEmpty || text == "0" { return nil }
        func fail(_ reason: String) -> AdminAddressError { AdminAddressError(flag: flag, text: text, reason: reason) }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/") else { throw fail("the unix socket path must be absolute") }
            return .unix(path: path)
        }
        if text.hasPrefix("/") { return .unix(path: text) }
        if text.allSatisfy(\.isASCIIDigit) { return .tcp(host: "127.0.0.1", port: try port(String(text), flag, text)) }
        guard let colon = text.lastIndex(of: ":") else {
            throw fail("missing port (want host:port, for example 127.0.0.1:10249)")
        }
        var host = String(text[..<colon])
        let portText = String(text[text.index(after: colon)...])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]") else { throw fail("unbalanced [ in the address") }
            host = String(host.dropFirst().dropLast())
        } else if host.contains(":") {
            throw fail("an IPv6 address needs brackets: [::1]:10256")
        }
        if host.isEmpty { host = "127.0.0.1" }
        return .tcp(host: host, port: try port(portText, flag, text))
    }

    private static func port(_ text: String, _ flag: String, _ whole: String) throws(AdminAddressError) -> UInt16 {
        guard !text.isEmpty, text.allSatisfy(\.isASCIIDigit), let value = UInt16(text) else {
            throw AdminAddressError(flag: flag, text: whole, reason: "invalid port \"\(text)\"")
        }
        return value
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

public struct AdminAddressError: Error, CustomStringConvertible {
    public let flag: String
    public let text: String
    public let reason: String
    public var description: String { "invalid argument \"\(text)\" for \"--\(flag)\": \(reason)" }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
