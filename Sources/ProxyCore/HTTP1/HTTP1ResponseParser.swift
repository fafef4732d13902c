/// Incremental, strict parser for one HTTP/1.x response from the upstream (ALPN `http/1.1` connections and upgrades).
///
/// Framing (RFC 9112 §6.3): no body for a HEAD request, 1xx, 204 and 304; a 2xx to CONNECT and a 101 end parsing
/// after the head (the rest is tunnel data, see `takeRemainingBytes()`); otherwise chunked (chunk data handed out,
/// framing and trailers dropped), Content-Length, or read-until-close (ended by `finish()`).
/// Interim 1xx responses other than 101 (100 Continue, 102, 103) are validated and skipped.
///
/// Every error has status 502: whatever the upstream did wrong, the client gets a Bad Gateway. As with the request
/// parser, after an error the parser stays failed. Stricter than RFC 9112 in two places, to avoid forwarding a body
/// whose framing proxyd cannot vouch for: a `Transfer-Encoding` other than exactly `chunked` is an error (rather
/// than read-until-close), and so is `Transfer-Encoding` in an HTTP/1.0 response.
///
/// One parser handles one request's response. After `.end`, bytes are no longer parsed but kept for
/// `takeRemainingBytes()`; to read the next response on a kept-alive connection, make a new parser.
public struct HTTP1ResponseParser: Sendable {
    private enum State: Sendable {
        case statusLine
        case fields
        case body
        case tunnel
        case done
        case finished
        case failed(HTTP1Error)
    }

    private let limits: HTTP1Limits
    private let isHeadRequest: Bool
    private let isConnectRequest: Bool
    private var state: State = .statusLine
    private var lines = HTTP1LineReader()
    private var head = HTTPResponseHead(status: 0)
    private var headerBytes = 0
    private var receivedBytes = false
    private var bodyDecoder = HTTP1BodyDecoder(framing: .none, limits: HTTP1Limits())
    private var remaining: [UInt8] = []

    /// True after `.end` when another request may be sent on this connection: the response kept the connection
    /// alive and was not delimited by the connection's close. (Unsolicited bytes after the response, see
    /// `takeRemainingBytes()`, also make the connection unusable.)
    public private(set) var connectionReusable = false

    /// - Parameter requestMethod: the method of the request this response answers (HEAD and CONNECT matter).
    public init(requestMethod: String, limits: HTTP1Limits = .init()) {
        self.limits = limits
        isHeadRequest = requestMethod == "HEAD"
        isConnectRequest = requestMethod == "CONNECT"
    }

    /// Parses as much of `bytes` as possible.
    /// - Returns: the events completed by these bytes, in order.
    /// - Throws: a 502 `HTTP1Error` for the first protocol violation; the parser then stays failed.
    public mutating func feed(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [HTTP1ResponseEvent] {
        var events: [HTTP1ResponseEvent] = []
        var i = bytes.startIndex
        if !bytes.isEmpty { receivedBytes = true }
        do throws(HTTP1Error) {
            while true {
                switch state {
                case .failed(let error):
                    throw error
                case .tunnel, .done:
                    remaining.append(contentsOf: bytes[i...])
                    return events
                case .finished:
                    return events
                case .statusLine, .fields, .body:
                    guard i < bytes.endIndex else { return events }
                    try step(bytes, &i, &events)
                }
            }
        } catch {
            let upstreamError = error.status == 502
                ? error : HTTP1Error(status: 502, reason: "invalid upstream response: \(error.reason)")
            state = .failed(upstreamError)
            throw upstreamError
        }
    }

    /// Parses `buffer` as `feed(_:)` does, without copying body bytes: they come out as slices of `buffer`. Only
    /// the head and chunked framing are copied, a line at a time, for parsing.
    /// - Throws: as `feed(_:)`.
    public mutating func feed(_ buffer: ByteBuffer) throws(HTTP1Error) -> [HTTP1ResponseBufferEvent] {
        var input = buffer
        var events: [HTTP1ResponseBufferEvent] = []
        while !input.isEmpty {
            if case .body = state, bodyDecoder.dataBytesAhead > 0 {
                let count = min(bodyDecoder.dataBytesAhead, input.readableBytes)
                receivedBytes = true
                events.append(.body(input.readSlice(length: count)))
                if bodyDecoder.skipData(count) {
                    messageEnded()
                    events.append(.end)
                }
                continue
            }
            // The head, chunk framing or trailers: one line at a time, so the body bytes after it stay in `input`.
            // In the terminal states (`remaining` bytes, failed) everything left goes in at once.
            var count = input.readableBytes
            switch state {
            case .statusLine, .fields, .body:
                if let lf = input.firstIndex(of: ASCII.lf) { count = lf + 1 }
            case .tunnel, .done, .finished, .failed:
                break
            }
            let piece = input.readSlice(length: count).readableBytesArray
            // Heads, ends and (in the terminal states) nothing else: body bytes never reach this `feed`.
            events += try feed(piece[...]).map(HTTP1ResponseBufferEvent.init)
        }
        return events
    }

    /// Call when the upstream closed its side.
    /// - Returns: `.end` when it completes a read-until-close body, else nothing.
    /// - Throws: 502 when the upstream closed before or in the middle of a response.
    public mutating func finish() throws(HTTP1Error) -> [HTTP1ResponseEvent] {
        switch state {
        case .failed(let error):
            throw error
        case .body where bodyDecoder.isUntilClose:
            state = .finished
            return [.end]
        case .tunnel:
            return []
        case .done, .finished:
            state = .finished
            return []
        case .statusLine, .fields, .body:
            let error = HTTP1Error(
                status: 502,
                reason: receivedBytes
                    ? "upstream closed the connection in the middle of a response"
                    : "upstream closed the connection without sending a response"
            )
            state = .failed(error)
            throw error
        }
    }

    /// Bytes received after a 101 or CONNECT 2xx head (tunnel data), or after a complete response; handed over
    /// once: the buffer is emptied.
    public mutating func takeRemainingBytes() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &remaining)
        return taken
    }

    private mutating func step(
        _ bytes: ArraySlice<UInt8>, _ i: inout Int, _ events: inout [HTTP1ResponseEvent]
    ) throws(HTTP1Error) {
        switch state {
        case .statusLine:
            guard let line = try lines.readLine(
                bytes, &i, limit: limits.requestLine, tooLong: .badRequest("status line too long")
            ) else { return }
            head = try Self.parseStatusLine(line)
            headerBytes = 0
            state = .fields
        case .fields:
            let budget = limits.headerBytes - headerBytes - 2
            guard budget >= 0 else { throw .headersTooLarge("header section too large") }
            guard let line = try lines.readLine(
                bytes, &i, limit: budget, tooLong: .headersTooLarge("header section too large")
            ) else { return }
            headerBytes += line.count + 2
            if line.isEmpty {
                try completeHead(&events)
            } else {
                guard head.headers.count < limits.headerCount else { throw .headersTooLarge("too many header fields") }
                let field = try HTTP1Syntax.parseFieldLine(line)
                head.headers.add(name: field.name, value: field.value)
            }
        case .body:
            let ended = try bodyDecoder.decode(bytes, &i) { events.append(.body($0)) }
            if ended { endMessage(&events) }
        case .tunnel, .done, .finished, .failed:
            preconditionFailure("step called in a terminal state")
        }
    }

    private mutating func completeHead(_ events: inout [HTTP1ResponseEvent]) throws(HTTP1Error) {
        let status = head.status
        if status < 200, status != 101 {
            state = .statusLine  // interim response: skipped
            return
        }
        let framing = try Self.framing(of: head)
        events.append(.head(head))
        if status == 101 || (isConnectRequest && (200..<300).contains(status)) {
            events.append(.end)
            state = .tunnel
            return
        }
        if isHeadRequest || status == 204 || status == 304 || framing == .none {
            endMessage(&events)
            return
        }
        bodyDecoder = HTTP1BodyDecoder(framing: framing, limits: limits)
        state = .body
    }

    private mutating func endMessage(_ events: inout [HTTP1ResponseEvent]) {
        events.append(.end)
        messageEnded()
    }

    private mutating func messageEnded() {
        connectionReusable = head.keepAlive
        state = .done
    }

    private static func framing(of head: HTTPResponseHead) throws(HTTP1Error) -> HTTPBodyFraming {
        let length = try HTTP1Framing.contentLength(head.headers)
        if head.headers.contains("transfer-encoding") {
            guard length == nil else { throw .badRequest("both Content-Length and Transfer-Encoding") }
            guard head.version == .http1_1 else { throw .badRequest("Transfer-Encoding in an HTTP/1.0 response") }
            guard head.headers.tokens("transfer-encoding") == ["chunked"] else {
                throw .badRequest("unsupported Transfer-Encoding")
            }
            return .chunked
        }
        if let length { return length > 0 ? .contentLength(length) : .none }
        return .untilClose
    }

    /// `HTTP-version SP 3DIGIT SP [reason-phrase]`; a missing SP after the code is tolerated.
    static func parseStatusLine(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> HTTPResponseHead {
        let s = line.startIndex
        guard line.count >= 12, line[s + 8] == ASCII.sp else { throw .badRequest("malformed status line") }
        let version = try HTTP1Syntax.parseVersion(line[s..<s + 8])
        var status = 0
        for b in line[(s + 9)..<(s + 12)] {
            guard b >= 0x30, b <= 0x39 else { throw .badRequest("malformed status code") }
            status = status * 10 + Int(b - 0x30)
        }
        guard status >= 100 else { throw .badRequest("status code below 100") }
        var reason = ""
        if line.count > 12 {
            guard line[s + 12] == ASCII.sp else { throw .badRequest("malformed status line") }
            let phrase = line[(s + 13)...]
            for b in phrase where !HTTP1Syntax.isFieldValueByte(b) {
                throw .badRequest("control character in reason phrase")
            }
            reason = String(decoding: phrase, as: UTF8.self)
        }
        return HTTPResponseHead(status: status, reason: reason, version: version)
    }
}
