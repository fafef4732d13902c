/// A response proxyd writes itself, without the apiserver: filter rejections, routing redirects and upstream
/// failures. Upstream failures carry a Kubernetes `Status` object so that kubectl and client libraries show a
/// readable message.
struct LocalResponse: Sendable, Equatable {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]

    /// kubectl's answer to a filtered request: `403`, `Forbidden\n`, plain text, `nosniff`.
    static let forbidden = LocalResponse(
        status: 403,
        headers: HTTPHeaders([
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ]),
        body: Array("Forbidden\n".utf8)
    )

    /// Go's `404 page not found` for paths outside the API prefix.
    static let notFound = LocalResponse(
        status: 404,
        headers: HTTPHeaders([
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Content-Type-Options", "nosniff"),
        ]),
        body: Array("404 page not found\n".utf8)
    )

    /// ServeMux-style `301 Moved Permanently` to a cleaned or slash-terminated path.
    static func movedPermanently(to location: String) -> LocalResponse {
        LocalResponse(
            status: 301,
            headers: HTTPHeaders([("Location", location), ("Content-Type", "text/html; charset=utf-8")]),
            body: Array("<a href=\"\(htmlEscaped(location))\">Moved Permanently</a>.\n\n".utf8)
        )
    }

    /// A Kubernetes `metav1.Status` failure, e.g. for 502/503/504 when the apiserver cannot be reached.
    static func status(_ code: Int, reason: String, message: String) -> LocalResponse {
        let json = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
            + "\"message\":\(jsonQuoted(message)),\"reason\":\(jsonQuoted(reason)),\"code\":\(code)}\n"
        return LocalResponse(
            status: code,
            headers: HTTPHeaders([("Content-Type", "application/json")]),
            body: Array(json.utf8)
        )
    }

    /// The Status reply for a failed upstream exchange.
    static func upstreamFailure(_ failure: UpstreamFailure) -> LocalResponse {
        switch failure {
        case .unavailable(let why):
            return .status(503, reason: "ServiceUnavailable", message: "proxyd: the apiserver is unavailable: \(why)")
        case .badGateway(let why):
            return .status(502, reason: "BadGateway", message: "proxyd: error talking to the apiserver: \(why)")
        case .timeout(let why):
            return .status(504, reason: "Timeout", message: "proxyd: the apiserver did not answer in time: \(why)")
        }
    }

    /// No credential could be obtained yet (an exec plugin or token file failing since start-up): 503, with the
    /// reason, which never contains a secret (a plugin's error, the token file's read error).
    static func credentialsUnavailable(_ reason: String) -> LocalResponse {
        .status(503, reason: "ServiceUnavailable", message: "proxyd: no credentials for the apiserver: \(reason)")
    }

    /// A 4xx for a request proxyd could not parse; the connection is closed afterwards.
    static func badRequest(status: Int, reason: String) -> LocalResponse {
        LocalResponse(
            status: status,
            headers: HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]),
            body: Array("\(status) \(reason)\n".utf8)
        )
    }
}

/// Why an exchange with the apiserver failed, classified for the client's status code.
enum UpstreamFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect, or the apiserver is known to be down (503).
    case unavailable(String)
    /// TLS failure, protocol error, reset stream (502).
    case badGateway(String)
    /// Connect or handshake timed out (504).
    case timeout(String)

    var description: String {
        switch self {
        case .unavailable(let s), .badGateway(let s), .timeout(let s): return s
        }
    }
}

/// A JSON string literal. `escapeHTML` also writes `<`, `>` and `&` as `\u003c` … like Go's `encoding/json`
/// (for output that must match what client-go produces).
func jsonQuoted(_ s: String, escapeHTML: Bool = false) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "<" where escapeHTML: out += "\\u003c"
        case ">" where escapeHTML: out += "\\u003e"
        case "&" where escapeHTML: out += "\\u0026"
        case let c where c.value < 0x20:
            let hex = String(c.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

func htmlEscaped(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}
