/// The HTTP/1.x versions proxyd speaks. Anything else is answered with 505 (requests) or fails (responses).
public enum HTTPVersion: Sendable, Equatable, Hashable, CustomStringConvertible {
    case http1_0, http1_1

    public var description: String {
        switch self {
        case .http1_0: "HTTP/1.0"
        case .http1_1: "HTTP/1.1"
        }
    }
}

/// How a message's body is delimited on the wire (RFC 9112 §6).
public enum HTTPBodyFraming: Sendable, Equatable {
    /// No body at all.
    case none
    /// Exactly this many bytes (never 0: a zero length is `.none`).
    case contentLength(Int)
    /// `Transfer-Encoding: chunked`.
    case chunked
    /// Responses only: the body runs until the upstream closes the connection.
    case untilClose
}

/// A request's start line and header section, as received from a client.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request-target exactly as sent: origin-form (`/path?q`), absolute-form (`http://h/p`),
    /// authority-form (`host:port`, CONNECT only) or asterisk-form (`*`, OPTIONS only).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(method: String, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders()) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// Whether the connection stays open after this exchange: HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
    public var keepAlive: Bool {
        connectionKeepAlive(version: version, headers: headers)
    }

    /// `Expect: 100-continue` on an HTTP/1.1 request (HTTP/1.0 clients cannot expect it, RFC 9110 §10.1.1).
    public var expectsContinue: Bool {
        version == .http1_1 && headers.containsToken("expect", "100-continue")
    }

    /// An HTTP/1.1 protocol upgrade: `Connection` lists `upgrade`, an `Upgrade` field is present and it names a
    /// protocol other than `h2c`. proxyd deliberately ignores `Upgrade: h2c` (the request is then an ordinary one).
    /// HTTP/1.0 requests never upgrade (RFC 9110 §7.8).
    public var isUpgrade: Bool {
        guard version == .http1_1, headers.containsToken("connection", "upgrade") else { return false }
        return headers.tokens("upgrade").contains { $0 != "h2c" }
    }

    /// A CONNECT request: after its head the connection becomes a tunnel.
    public var isConnect: Bool { method == "CONNECT" }

    /// How the body is framed. Only meaningful for heads the parser accepted (it has validated
    /// `Content-Length` and `Transfer-Encoding`); for an invalid combination this returns `.none`.
    public var bodyFraming: HTTPBodyFraming {
        (try? HTTP1Framing.requestFraming(self)) ?? .none
    }

    /// Whether a body follows the head.
    public var hasBody: Bool { bodyFraming != .none }
}

/// A response's status line and header section.
public struct HTTPResponseHead: Sendable, Equatable {
    public var status: Int
    /// The reason phrase as received; when serializing, an empty reason is replaced by the standard phrase.
    public var reason: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(status: Int, reason: String = "", version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
    }

    /// Per version and `Connection` tokens, as for requests. A response whose body is delimited by the close
    /// of the connection cannot be followed by another one: see `HTTP1ResponseParser.connectionReusable`.
    public var keepAlive: Bool {
        connectionKeepAlive(version: version, headers: headers)
    }
}

public enum HTTP1RequestEvent: Sendable, Equatable {
    case head(HTTPRequestHead)
    /// A piece of the body, decoded from any chunked framing; a slice of the bytes passed to `feed`.
    case body(ArraySlice<UInt8>)
    case end
}

public enum HTTP1ResponseEvent: Sendable, Equatable {
    case head(HTTPResponseHead)
    /// A piece of the body, decoded from any chunked framing; a slice of the bytes passed to `feed`.
    case body(ArraySlice<UInt8>)
    case end
}

/// `HTTP1ResponseParser.feed(_:)` for a `ByteBuffer`: the same events, with body bytes as slices of that buffer.
public enum HTTP1ResponseBufferEvent: Sendable, Equatable {
    case head(HTTPResponseHead)
    /// A piece of the body, decoded from any chunked framing; shares the storage of the buffer passed to `feed`.
    case body(ByteBuffer)
    case end

    /// The same event; body bytes copied into a buffer of their own.
    init(_ event: HTTP1ResponseEvent) {
        switch event {
        case .head(let head): self = .head(head)
        case .body(let bytes): self = .body(ByteBuffer(bytes: bytes))
        case .end: self = .end
        }
    }
}

func connectionKeepAlive(version: HTTPVersion, headers: HTTPHeaders) -> Bool {
    if headers.containsToken("connection", "close") { return false }
    return version == .http1_1 || headers.containsToken("connection", "keep-alive")
}
