import FoundationEssentials

/// The client side of opening a tunnel through a `proxy-url` proxy, without I/O: HTTP `CONNECT` (RFC 9110 §9.3.6)
/// or SOCKS5 (RFC 1928, with RFC 1929 username/password). `UpstreamTransport` runs it between the TCP connect (and,
/// for an `https` proxy, the TLS handshake with the proxy) and the apiserver's TLS handshake.
///
/// Feed it what the proxy sends; it answers with bytes to send, `established` with the bytes that followed the
/// proxy's answer (they already belong to the apiserver), or a failure message naming the proxy and the cause
/// (never the proxy's credentials). Input is bounded: a CONNECT answer by the HTTP/1 parser's head limits, a
/// SOCKS reply by its largest legal size.
struct ProxyHandshake {
    enum Progress: Equatable {
        /// Send `send` (possibly empty) and wait for more from the proxy.
        case needsInput(send: [UInt8])
        /// The tunnel is open. `leftover`: bytes after the proxy's answer, for the next layer.
        case established(leftover: [UInt8])
        case failed(String)
    }

    private enum State {
        case idle
        case connectResponse(HTTP1ResponseParser)
        case socksMethod
        case socksAuth
        case socksReply
        case done
    }

    let endpoint: ProxyEndpoint
    let targetHost: String
    let targetPort: UInt16
    private var state = State.idle
    private var buffer: [UInt8] = []

    /// - Parameters:
    ///   - targetHost: the apiserver's host (DNS name or IP literal, no brackets).
    init(endpoint: ProxyEndpoint, targetHost: String, targetPort: UInt16) {
        self.endpoint = endpoint
        self.targetHost = targetHost
        self.targetPort = targetPort
    }

    private var targetAuthority: String { hostPort(targetHost, targetPort) }

    /// The first bytes to send: the CONNECT request, or the SOCKS5 method selection.
    mutating func start() -> Progress {
        switch endpoint.kind {
        case .http, .https:
            state = .connectResponse(HTTP1ResponseParser(requestMethod: "CONNECT"))
            return .needsInput(send: Self.connectRequest(target: targetAuthority, endpoint: endpoint))
        case .socks5:
            state = .socksMethod
            // Go's net/http: "no authentication" only, or both methods when the URL has user information.
            let methods: [UInt8] = endpoint.username == nil ? [0x00] : [0x00, 0x02]
            return .needsInput(send: [0x05, UInt8(methods.count)] + methods)
        }
    }

    static func connectRequest(target: String, endpoint: ProxyEndpoint) -> [UInt8] {
        var head = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n"
        if let username = endpoint.username {
            let pair = Array("\(username):\(endpoint.password ?? "")".utf8)
            head += "Proxy-Authorization: Basic \(Data(pair).base64EncodedString())\r\n"
        }
        head += "\r\n"
        return Array(head.utf8)
    }

    /// Bytes from the proxy.
    mutating func receive(_ bytes: ArraySlice<UInt8>) -> Progress {
        switch state {
        case .idle, .done:
            return .failed("\(prefix): unexpected data from the proxy")
        case .connectResponse(var parser):
            return receiveConnectResponse(bytes, parser: &parser)
        case .socksMethod, .socksAuth, .socksReply:
            buffer.append(contentsOf: bytes)
            return driveSOCKS()
        }
    }

    /// The proxy closed the connection before the tunnel was open.
    func closedByProxy() -> String {
        switch endpoint.kind {
        case .http, .https: return "\(prefix): the proxy closed the connection before answering CONNECT"
        case .socks5: return "\(prefix): the proxy closed the connection during the SOCKS5 handshake"
        }
    }

    private var prefix: String {
        switch endpoint.kind {
        case .http, .https: return "proxyconnect tcp \(endpoint.authority)"
        case .socks5: return "socks connect tcp \(endpoint.authority)->\(targetAuthority)"
        }
    }

    // MARK: HTTP CONNECT

    private mutating func receiveConnectResponse(_ bytes: ArraySlice<UInt8>, parser: inout HTTP1ResponseParser)
        -> Progress
    {
        let events: [HTTP1ResponseEvent]
        do {
            events = try parser.feed(bytes)
        } catch {
            state = .done
            return .failed("\(prefix): \(error.reason)")
        }
        for event in events {
            guard case .head(let head) = event else { continue }
            state = .done
            guard (200..<300).contains(head.status) else {
                let reason = head.reason.isEmpty ? "" : " \(head.reason)"
                return .failed("\(prefix): the proxy answered CONNECT with \(head.status)\(reason)")
            }
            return .established(leftover: parser.takeRemainingBytes())
        }
        state = .connectResponse(parser)
        return .needsInput(send: [])
    }

    // MARK: SOCKS5

    private mutating func driveSOCKS() -> Progress {
        var send: [UInt8] = []
        while true {
            switch state {
            case .socksMethod:
                guard buffer.count >= 2 else { return .needsInput(send: send) }
                let version = buffer[0], method = buffer[1]
                buffer.removeFirst(2)
                guard version == 0x05 else { return fail("unexpected protocol version \(version)") }
                switch method {
                case 0x00:
                    break
                case 0x02 where endpoint.username != nil:
                    let user = Array((endpoint.username ?? "").utf8), pass = Array((endpoint.password ?? "").utf8)
                    guard !user.isEmpty, user.count <= 255, pass.count <= 255 else {
                        return fail("invalid username/password")
                    }
                    send += [0x01, UInt8(user.count)] + user + [UInt8(pass.count)] + pass
                    state = .socksAuth
                    continue
                case 0xFF:
                    return fail("no acceptable authentication methods")
                default:
                    return fail("unsupported authentication method \(method)")
                }
                guard let request = connectRequest() else {
                    return fail("host name too long")
                }
                send += request
                state = .socksReply
            case .socksAuth:
                guard buffer.count >= 2 else { return .needsInput(send: send) }
                let version = buffer[0], status = buffer[1]
                buffer.removeFirst(2)
                guard version == 0x01 else { return fail("invalid username/password version") }
                guard status == 0x00 else { return fail("username/password authentication failed") }
                guard let request = connectRequest() else { return fail("host name too long") }
                send += request
                state = .socksReply
            case .socksReply:
                guard buffer.count >= 5 else { return .needsInput(send: send) }
                guard buffer[0] == 0x05 else { return fail("unexpected protocol version \(buffer[0])") }
                guard buffer[1] == 0x00 else { return fail(Self.replyText(buffer[1])) }
                let addressLength: Int
                switch buffer[3] {
                case 0x01: addressLength = 4
                case 0x04: addressLength = 16
                case 0x03: addressLength = 1 + Int(buffer[4])
                default: return fail("unknown address type \(buffer[3])")
                }
                let total = 4 + addressLength + 2
                guard buffer.count >= total else { return .needsInput(send: send) }
                state = .done
                let leftover = Array(buffer[total...])
                buffer = []
                if !send.isEmpty { return fail("reply before the CONNECT request") }
                return .established(leftover: leftover)
            case .idle, .connectResponse, .done:
                return fail("unexpected state")
            }
        }
    }

    private mutating func fail(_ why: String) -> Progress {
        state = .done
        buffer = []
        return .failed("\(prefix): \(why)")
    }

    /// RFC 1928 §4 CONNECT: an IP literal as ATYP 1/4, anything else as a domain name (ATYP 3).
    private func connectRequest() -> [UInt8]? {
        var request: [UInt8] = [0x05, 0x01, 0x00]
        if let ip = Resolver.ipLiteralBytes(targetHost) {
            request.append(ip.count == 4 ? 0x01 : 0x04)
            request += ip
        } else {
            let name = Array(targetHost.utf8)
            guard !name.isEmpty, name.count <= 255 else { return nil }
            request += [0x03, UInt8(name.count)] + name
        }
        request += [UInt8(targetPort >> 8), UInt8(targetPort & 0xFF)]
        return request
    }

    /// RFC 1928 §6 reply codes, worded like golang.org/x/net/internal/socks.
    static func replyText(_ code: UInt8) -> String {
        switch code {
        case 0x01: return "general SOCKS server failure"
        case 0x02: return "connection not allowed by ruleset"
        case 0x03: return "network unreachable"
        case 0x04: return "host unreachable"
        case 0x05: return "connection refused"
        case 0x06: return "TTL expired"
        case 0x07: return "command not supported"
        case 0x08: return "address type not supported"
        default: return "unknown code \(code)"
        }
    }
}
