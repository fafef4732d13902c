/// Incremental, strict RFC 9112 parser for the requests a client sends to proxyd.
///
/// A value type with no I/O: feed it bytes as they arrive, split anywhere, and it returns the events they complete,
/// in order (several pipelined requests may come out of one feed). Body events are slices of the fed bytes;
/// only a head or chunk-size line split across feeds is copied into a small internal buffer.
///
/// After any error the parser stays failed: every later `feed` or `finish` throws the same error, and the caller
/// answers `error.status` and closes. Events completed earlier in the failing `feed` are not returned.
///
/// After the last event of a request that does not keep the connection alive (`Connection: close`, HTTP/1.0
/// without keep-alive), later bytes are discarded (RFC 9112 §9.6). After the `.end` of an upgrade request
/// (see `HTTPRequestHead.isUpgrade`) or a CONNECT, parsing stops: later bytes belong to the tunnel and are kept
/// for `takeRemainingBytes()`.
public struct HTTP1RequestParser: Sendable {
    private enum State: Sendable {
        case requestLine
        case fields
        case body
        case tunnel
        case closed
        case finished
        case failed(HTTP1Error)
    }

    private let limits: HTTP1Limits
    private var state: State = .requestLine
    private var lines = HTTP1LineReader()
    private var head = HTTPRequestHead(method: "", target: "")
    private var headerBytes = 0
    private var bodyDecoder = HTTP1BodyDecoder(framing: .none, limits: HTTP1Limits())
    private var afterMessage: State = .requestLine
    private var remaining: [UInt8] = []

    public init(limits: HTTP1Limits = .init()) {
        self.limits = limits
    }

    /// Parses as much of `bytes` as possible.
    /// - Returns: the events completed by these bytes, in order.
    /// - Throws: the first protocol violation; the parser then stays failed.
    public mutating func feed(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [HTTP1RequestEvent] {
        var events: [HTTP1RequestEvent] = []
        var i = bytes.startIndex
        do throws(HTTP1Error) {
            while true {
                switch state {
                case .failed(let error):
                    throw error
                case .tunnel:
                    remaining.append(contentsOf: bytes[i...])
                    return events
                case .closed, .finished:
                    return events
                case .requestLine, .fields, .body:
                    guard i < bytes.endIndex else { return events }
                    try step(bytes, &i, &events)
                }
            }
        } catch {
            state = .failed(error)
            throw error
        }
    }

    /// Call when the client half-closed its side.
    /// - Throws: 400 when a request was incomplete (truncated head or body); a stored error when already failed.
    public mutating func finish() throws(HTTP1Error) {
        switch state {
        case .failed(let error):
            throw error
        case .tunnel:
            return  // the tunnel's bytes stay available to takeRemainingBytes()
        case .requestLine where !lines.hasPartialLine, .closed, .finished:
            state = .finished
        case .requestLine, .fields, .body:
            let error = HTTP1Error.badRequest("client closed the connection in the middle of a request")
            state = .failed(error)
            throw error
        }
    }

    /// The bytes received after the head of an upgrade or CONNECT request (the start of the tunnel), handed over
    /// once: the buffer is emptied. Empty in any other state.
    public mutating func takeRemainingBytes() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &remaining)
        return taken
    }

    /// True while part of a request has been received but not its end (for choosing header-read vs idle timeouts).
    public var hasPartialMessage: Bool {
        switch state {
        case .requestLine: lines.hasPartialLine
        case .fields, .body: true
        case .tunnel, .closed, .finished, .failed: false
        }
    }

    /// True between requests: nothing of a next request received, and parsing has not stopped (no error, tunnel,
    /// `Connection: close` or end). The parser is then in the same state as a new one with the same limits, so a
    /// connection may drop it and make a new one when more bytes come.
    public var isBetweenRequests: Bool {
        if case .requestLine = state { return !lines.hasPartialLine }
        return false
    }

    /// True once parsing stopped for good after an upgrade or CONNECT request: the connection is now a tunnel.
    public var isTunneling: Bool {
        if case .tunnel = state { return true }
        return false
    }

    private mutating func step(
        _ bytes: ArraySlice<UInt8>, _ i: inout Int, _ events: inout [HTTP1RequestEvent]
    ) throws(HTTP1Error) {
        switch state {
        case .requestLine:
            guard let line = try lines.readLine(
                bytes, &i, limit: limits.requestLine,
                tooLong: .uriTooLong("request line longer than \(limits.requestLine) bytes")
            ) else { return }
            if line.isEmpty { return }  // RFC 9112 §2.2: ignore empty lines before a request line
            head = try Self.parseRequestLine(line)
            head.headers.reserveCapacity(Self.expectedFieldCount)
            headerBytes = 0
            state = .fields
        case .fields:
            let budget = limits.headerBytes - headerBytes - 2
            guard budget >= 0 else { throw .headersTooLarge("header section larger than \(limits.headerBytes) bytes") }
            guard let line = try lines.readLine(
                bytes, &i, limit: budget,
                tooLong: .headersTooLarge("header section larger than \(limits.headerBytes) bytes")
            ) else { return }
            headerBytes += line.count + 2
            if line.isEmpty {
                try completeHead(&events)
            } else {
                guard head.headers.count < limits.headerCount else {
                    throw .headersTooLarge("more than \(limits.headerCount) header fields")
                }
                let field = try HTTP1Syntax.parseFieldLine(line)
                head.headers.add(name: field.name, value: field.value)
            }
        case .body:
            let ended = try bodyDecoder.decode(bytes, &i) { events.append(.body($0)) }
            if ended {
                events.append(.end)
                state = afterMessage
            }
        case .tunnel, .closed, .finished, .failed:
            preconditionFailure("step called in a terminal state")
        }
    }

    /// Room made for a request's fields at once: kubectl and client-go send 5 to 8, curl 3, browsers 10 to 16.
    static let expectedFieldCount = 12

    private mutating func completeHead(_ events: inout [HTTP1RequestEvent]) throws(HTTP1Error) {
        let hosts = head.headers.values("host").count
        guard hosts <= 1 else { throw .badRequest("multiple Host fields") }
        guard hosts == 1 || head.version == .http1_0 else { throw .badRequest("HTTP/1.1 request without Host") }
        let framing = try HTTP1Framing.requestFraming(head)
        if head.isUpgrade || head.isConnect {
            afterMessage = .tunnel
        } else {
            afterMessage = head.keepAlive ? .requestLine : .closed
        }
        events.reserveCapacity(events.count + 2)   // the head and, usually, the end: one allocation
        events.append(.head(head))
        head = HTTPRequestHead(method: "", target: "")
        if framing == .none {
            events.append(.end)
            state = afterMessage
        } else {
            bodyDecoder = HTTP1BodyDecoder(framing: framing, limits: limits)
            state = .body
        }
    }

    /// `method SP request-target SP HTTP-version`, single spaces, with the target's form checked against the method.
    static func parseRequestLine(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> HTTPRequestHead {
        let start = line.startIndex, end = line.endIndex
        var i = start
        while i < end, line[i] != ASCII.sp {
            guard HTTP1Syntax.isTChar(line[i]) else { throw .badRequest("invalid character in method") }
            i += 1
        }
        guard i > start else { throw .badRequest("empty method") }
        guard i < end else { throw .badRequest("malformed request line") }
        let method = line[start..<i]
        i += 1
        let targetStart = i
        while i < end, line[i] != ASCII.sp {
            let b = line[i]
            guard b > ASCII.sp, b < ASCII.del, b != 0x23 /* # */ else {
                throw .badRequest("invalid character in request-target")
            }
            i += 1
        }
        guard i > targetStart else { throw .badRequest("empty request-target") }
        guard i < end else { throw .badRequest("malformed request line") }
        let target = line[targetStart..<i]
        let version = try HTTP1Syntax.parseVersion(line[(i + 1)...])
        try checkTargetForm(target, isConnect: method.elementsEqual("CONNECT".utf8),
                            isOptions: method.elementsEqual("OPTIONS".utf8))
        return HTTPRequestHead(
            method: String(decoding: method, as: UTF8.self),
            target: String(decoding: target, as: UTF8.self),
            version: version
        )
    }

    /// origin-form (`/…`) or absolute-form (`http://…`, `https://…`) for most methods; asterisk-form only for
    /// OPTIONS; authority-form (`host:port`), and only it, for CONNECT (RFC 9112 §3.2).
    private static func checkTargetForm(
        _ target: ArraySlice<UInt8>, isConnect: Bool, isOptions: Bool
    ) throws(HTTP1Error) {
        if isConnect {
            guard isAuthorityForm(target) else { throw .badRequest("CONNECT needs an authority-form target") }
            return
        }
        if target.first == ASCII.slash { return }
        if target.count == 1, target.first == 0x2A /* * */ {
            guard isOptions else { throw .badRequest("asterisk-form target outside OPTIONS") }
            return
        }
        for scheme in ["http://", "https://"] where startsIgnoringCase(target, scheme) {
            let authority = target.dropFirst(scheme.utf8.count)
            guard let first = authority.first, first != ASCII.slash, first != 0x3F /* ? */ else {
                throw .badRequest("absolute-form target without authority")
            }
            return
        }
        throw .badRequest("request-target is not origin-form or absolute-form")
    }

    /// `uri-host ":" port` with a non-empty host and a 1–5 digit port.
    private static func isAuthorityForm(_ target: ArraySlice<UInt8>) -> Bool {
        guard let colon = target.lastIndex(of: ASCII.colon) else { return false }
        let host = target[..<colon], port = target[(colon + 1)...]
        guard !host.isEmpty, (1...5).contains(port.count), port.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return false
        }
        return !host.contains { $0 == ASCII.slash || $0 == 0x3F /* ? */ || $0 == 0x40 /* @ */ }
    }

    private static func startsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ prefix: String) -> Bool {
        guard bytes.count >= prefix.utf8.count else { return false }
        return zip(bytes, prefix.utf8).allSatisfy { ($0 | 0x20) == $1 || $0 == $1 }
    }
}
