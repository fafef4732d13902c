// Shared RFC 9112 building blocks for the request and response parsers: line reading, field lines, framing.

enum ASCII {
    static let nul: UInt8 = 0x00
    static let htab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let sp: UInt8 = 0x20
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let slash: UInt8 = 0x2F
    static let del: UInt8 = 0x7F
}

enum HTTP1Syntax {
    /// tchar (RFC 9110 §5.6.2): `!#$%&'*+-.^_`|~`, DIGIT, ALPHA.
    @inline(__always)
    static func isTChar(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: true
        default: false
        }
    }

    /// field-vchar / SP / HTAB / obs-text: everything but controls (other than HTAB) and DEL.
    @inline(__always)
    static func isFieldValueByte(_ b: UInt8) -> Bool {
        b == ASCII.htab || (b >= 0x20 && b != ASCII.del)
    }

    @inline(__always)
    static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: Int(b - 0x30)
        case 0x41...0x46: Int(b - 0x41 + 10)
        case 0x61...0x66: Int(b - 0x61 + 10)
        default: nil
        }
    }

    /// Parses `field-name ":" OWS field-value OWS` (RFC 9112 §5). The caller handles the empty line.
    /// - Throws: 400 for obs-fold, whitespace before the colon, a bad name or a control character in the value.
    static func parseFieldLine(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> HTTPHeaders.Field {
        let start = line.startIndex, end = line.endIndex
        if let first = line.first, first == ASCII.sp || first == ASCII.htab {
            throw .badRequest("obsolete line folding (field line starts with whitespace)")
        }
        var i = start
        while i < end, line[i] != ASCII.colon {
            let b = line[i]
            if b == ASCII.sp || b == ASCII.htab { throw .badRequest("whitespace between field name and colon") }
            guard isTChar(b) else { throw .badRequest("invalid character in field name") }
            i += 1
        }
        guard i < end else { throw .badRequest("field line without a colon") }
        guard i > start else { throw .badRequest("empty field name") }
        var vs = i + 1, ve = end
        while vs < ve, line[vs] == ASCII.sp || line[vs] == ASCII.htab { vs += 1 }
        while ve > vs, line[ve - 1] == ASCII.sp || line[ve - 1] == ASCII.htab { ve -= 1 }
        for b in line[vs..<ve] where !isFieldValueByte(b) {
            throw .badRequest("control character in field value")
        }
        return HTTPHeaders.Field(
            name: String(decoding: line[start..<i], as: UTF8.self),
            value: String(decoding: line[vs..<ve], as: UTF8.self)
        )
    }

    /// Parses `HTTP/x.y`. Malformed → 400; well-formed but neither 1.0 nor 1.1 → 505.
    static func parseVersion(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> HTTPVersion {
        guard bytes.count == 8, bytes.starts(with: "HTTP/".utf8) else { throw .badRequest("malformed HTTP version") }
        let s = bytes.startIndex
        let major = bytes[s + 5], dot = bytes[s + 6], minor = bytes[s + 7]
        guard (0x30...0x39).contains(major), dot == 0x2E, (0x30...0x39).contains(minor) else {
            throw .badRequest("malformed HTTP version")
        }
        switch (major, minor) {
        case (0x31, 0x31): return .http1_1
        case (0x31, 0x30): return .http1_0
        default: throw .versionNotSupported("unsupported HTTP version \(major - 0x30).\(minor - 0x30)")
        }
    }
}

/// Accumulates one CRLF-terminated line across feeds. A line wholly inside one input is returned as a slice of
/// that input (no copy); only a line split across feeds is buffered.
///
/// Strict: the line must end in CRLF (bare LF → 400) and contain no other CR (bare CR → 400) and no NUL (400).
/// Checks run at the position of the offending byte, so the outcome does not depend on how input was split.
struct HTTP1LineReader: Sendable {
    private var buffer: [UInt8] = []
    private var bufferedCRs = 0

    var hasPartialLine: Bool { !buffer.isEmpty }

    /// - Parameters:
    ///   - limit: most bytes in the line without its CRLF.
    ///   - tooLong: thrown as soon as the line is known to exceed `limit`.
    /// - Returns: the line without CRLF, or nil when `input` ran out first (then `index == input.endIndex`).
    mutating func readLine(
        _ input: ArraySlice<UInt8>, _ index: inout Int, limit: Int, tooLong: @autoclosure () -> HTTP1Error
    ) throws(HTTP1Error) -> ArraySlice<UInt8>? {
        let end = input.endIndex
        // Bytes allowed before the LF: the line plus its CR.
        let allowed = limit + 1 - buffer.count
        let stop = allowed < end - index ? index + max(allowed, 0) : end
        var crs = bufferedCRs
        var j = index
        while j < stop {
            let b = input[j]
            if b == ASCII.lf { break }
            if b == ASCII.cr { crs += 1 } else if b == ASCII.nul { throw .badRequest("NUL byte in message framing") }
            j += 1
        }
        if j == stop, j < end, input[j] != ASCII.lf { throw tooLong() }
        if j == end {
            buffer.append(contentsOf: input[index..<end])
            bufferedCRs = crs
            index = end
            return nil
        }
        let line: ArraySlice<UInt8>
        if buffer.isEmpty {
            line = input[index..<j]
        } else {
            buffer.append(contentsOf: input[index..<j])
            line = buffer[...]
            buffer = []
            bufferedCRs = 0
        }
        index = j + 1
        guard line.last == ASCII.cr else {
            throw .badRequest(crs > 0 ? "bare CR in message framing" : "bare LF line ending")
        }
        guard crs == 1 else { throw .badRequest("bare CR in message framing") }
        // Not `removeLast()`: mutating a slice that shares the input's storage would copy the line.
        return line.dropLast()
    }
}

enum HTTP1Framing {
    /// The value of the one `Content-Length` field, or nil without one.
    /// - Throws: 400 for several fields, a list (even of identical values such as `5, 5`), a non-digit or overflow.
    static func contentLength(_ headers: HTTPHeaders) throws(HTTP1Error) -> Int? {
        let values = headers.values("content-length")
        guard let value = values.first else { return nil }
        guard values.count == 1 else { throw .badRequest("multiple Content-Length fields") }
        var n = 0
        for b in value.utf8 {
            guard b >= 0x30, b <= 0x39 else { throw .badRequest("invalid Content-Length") }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(b - 0x30))
            guard !o1, !o2 else { throw .badRequest("Content-Length overflows") }
            n = a
        }
        guard !value.isEmpty else { throw .badRequest("empty Content-Length") }
        return n
    }

    /// Body framing of a request (RFC 9112 §6.3), with proxyd's smuggling-safe rules.
    static func requestFraming(_ head: HTTPRequestHead) throws(HTTP1Error) -> HTTPBodyFraming {
        let length = try contentLength(head.headers)
        if head.headers.contains("transfer-encoding") {
            guard length == nil else { throw .badRequest("both Content-Length and Transfer-Encoding") }
            guard head.version == .http1_1 else { throw .badRequest("Transfer-Encoding in an HTTP/1.0 request") }
            let codings = head.headers.tokens("transfer-encoding")
            let chunkedCount = codings.count { $0 == "chunked" }
            guard !codings.isEmpty else { throw .badRequest("empty Transfer-Encoding") }
            if chunkedCount > 1 || (chunkedCount == 1 && codings.last != "chunked") {
                throw .badRequest("chunked is not the final transfer coding exactly once")
            }
            guard codings.count == 1, chunkedCount == 1 else {
                throw .notImplemented("unsupported transfer coding")
            }
            guard !head.isConnect else { throw .badRequest("CONNECT with a body") }
            return .chunked
        }
        if let length, length > 0 {
            guard !head.isConnect else { throw .badRequest("CONNECT with a body") }
            return .contentLength(length)
        }
        return .none
    }
}

/// Decodes a body framed by length, chunked coding or connection close, handing data out as input slices.
struct HTTP1BodyDecoder: Sendable {
    private enum Mode: Sendable {
        case length(Int)
        case untilClose
        case chunkSize
        case chunkData(Int)
        case chunkDataCR
        case chunkDataLF
        case trailers
        case done
    }

    private var mode: Mode
    private var lines = HTTP1LineReader()
    private var trailerBytes = 0
    private var trailerCount = 0
    private let limits: HTTP1Limits

    init(framing: HTTPBodyFraming, limits: HTTP1Limits) {
        self.limits = limits
        switch framing {
        case .none: mode = .done
        case .contentLength(let n): mode = n > 0 ? .length(n) : .done
        case .chunked: mode = .chunkSize
        case .untilClose: mode = .untilClose
        }
    }

    var isUntilClose: Bool {
        if case .untilClose = mode { return true }
        return false
    }

    /// How many of the next input bytes are body data that decoding passes on unexamined (the rest of a
    /// `Content-Length` body or of a chunk, or `Int.max` until close); 0 when framing (a chunk-size line, CRLF,
    /// trailers) comes next or the body is complete.
    var dataBytesAhead: Int {
        switch mode {
        case .length(let n), .chunkData(let n): n
        case .untilClose: Int.max
        case .chunkSize, .chunkDataCR, .chunkDataLF, .trailers, .done: 0
        }
    }

    /// Takes `count` (at most `dataBytesAhead`) body bytes without looking at them, as `decode` would.
    /// - Returns: true when that completes the body.
    mutating func skipData(_ count: Int) -> Bool {
        precondition(count >= 0 && count <= dataBytesAhead, "HTTP1BodyDecoder.skipData beyond the data ahead")
        switch mode {
        case .length(let n):
            mode = count == n ? .done : .length(n - count)
            return count == n
        case .chunkData(let n):
            mode = count == n ? .chunkDataCR : .chunkData(n - count)
            return false
        default:
            return false
        }
    }

    /// Consumes body bytes from `input[index...]`, passing decoded data to `body`.
    /// - Returns: true once the body is complete; false only after consuming all of `input`.
    mutating func decode(
        _ input: ArraySlice<UInt8>, _ index: inout Int, body: (ArraySlice<UInt8>) -> Void
    ) throws(HTTP1Error) -> Bool {
        let end = input.endIndex
        while true {
            switch mode {
            case .done:
                return true
            case .length(let n):
                let take = min(n, end - index)
                if take > 0 {
                    body(input[index..<index + take])
                    index += take
                }
                if take == n {
                    mode = .done
                    return true
                }
                mode = .length(n - take)
                return false
            case .untilClose:
                if index < end {
                    body(input[index..<end])
                    index = end
                }
                return false
            case .chunkSize:
                guard let line = try lines.readLine(
                    input, &index, limit: limits.chunkLine, tooLong: .badRequest("chunk-size line too long")
                ) else { return false }
                let size = try parseChunkSize(line)
                mode = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let n):
                guard index < end else { return false }
                let take = min(n, end - index)
                body(input[index..<index + take])
                index += take
                mode = take == n ? .chunkDataCR : .chunkData(n - take)
            case .chunkDataCR:
                guard index < end else { return false }
                guard input[index] == ASCII.cr else { throw .badRequest("chunk data not followed by CRLF") }
                index += 1
                mode = .chunkDataLF
            case .chunkDataLF:
                guard index < end else { return false }
                guard input[index] == ASCII.lf else { throw .badRequest("chunk data not followed by CRLF") }
                index += 1
                mode = .chunkSize
            case .trailers:
                let budget = limits.headerBytes - trailerBytes - 2
                guard budget >= 0 else { throw .headersTooLarge("trailer section too large") }
                guard let line = try lines.readLine(
                    input, &index, limit: budget, tooLong: .headersTooLarge("trailer section too large")
                ) else { return false }
                trailerBytes += line.count + 2
                if line.isEmpty {
                    mode = .done
                    return true
                }
                _ = try HTTP1Syntax.parseFieldLine(line)  // validated, then dropped
                trailerCount += 1
                guard trailerCount <= limits.headerCount else { throw .headersTooLarge("too many trailer fields") }
            }
        }
    }

    /// `1*HEXDIG [ BWS ";" chunk-ext ]`; extensions are checked for stray control characters and ignored.
    private func parseChunkSize(_ line: ArraySlice<UInt8>) throws(HTTP1Error) -> Int {
        var i = line.startIndex
        let end = line.endIndex
        var size = 0
        var digits = 0
        while i < end, let v = HTTP1Syntax.hexValue(line[i]) {
            digits += 1
            guard digits <= limits.chunkSizeDigits else { throw .badRequest("chunk size has too many digits") }
            let (m, o1) = size.multipliedReportingOverflow(by: 16)
            let (a, o2) = m.addingReportingOverflow(v)
            guard !o1, !o2 else { throw .badRequest("chunk size overflows") }
            size = a
            i += 1
        }
        guard digits > 0 else { throw .badRequest("invalid chunk size") }
        guard i < end else { return size }
        while i < end, line[i] == ASCII.sp || line[i] == ASCII.htab { i += 1 }
        guard i < end, line[i] == ASCII.semicolon else { throw .badRequest("invalid chunk size") }
        for b in line[i...] where !HTTP1Syntax.isFieldValueByte(b) {
            throw .badRequest("control character in chunk extension")
        }
        return size
    }
}
