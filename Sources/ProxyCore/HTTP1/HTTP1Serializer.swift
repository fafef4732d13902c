/// Writes HTTP/1.1 heads and chunked framing. Pure functions over `[UInt8]`.
///
/// Defensive against response splitting, whatever the caller passes: CR, LF and NUL in header values and reason
/// phrases become SP, fields whose name is not a token are skipped, method bytes that are not tchar are dropped,
/// and bytes of the request-target that may not appear in one (controls, SP, DEL, non-ASCII) are percent-encoded.
public enum HTTP1Serializer {
    /// `HTTP/1.1 <status> <reason>\r\n` + fields + `\r\n`. An empty reason gets the standard phrase.
    /// proxyd always speaks HTTP/1.1 to clients, so `head.version` is not used.
    public static func responseHead(_ head: HTTPResponseHead) -> [UInt8] {
        var out: [UInt8] = []
        writeResponseHead(head, into: &out)
        return out
    }

    /// Appends the serialised head to `out`: a client connection's output buffer, so the head is written where it
    /// is sent from rather than built in an array and copied there.
    static func writeResponseHead(_ head: HTTPResponseHead, into out: inout some HTTP1ByteSink) {
        out.reserveAdditional(48 + head.reason.utf8.count + fieldsSize(head.headers))
        out.appendBytes("HTTP/1.1 ".utf8)
        appendStatus(head.status, to: &out)
        out.appendByte(ASCII.sp)
        appendText(head.reason.isEmpty ? reasonPhrase(for: head.status) : head.reason, to: &out)
        out.appendBytes(crlf)
        appendFields(head.headers, to: &out)
    }

    public static func requestHead(method: String, target: String, headers: HTTPHeaders) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + method.utf8.count + 3 * target.utf8.count + fieldsSize(headers))
        out.append(contentsOf: method.utf8.lazy.filter(HTTP1Syntax.isTChar))
        out.append(ASCII.sp)
        for b in target.utf8 {
            if b > ASCII.sp, b < ASCII.del {
                out.append(b)
            } else {
                out.append(0x25)  // %
                out.append(hexDigitsUpper[Int(b >> 4)])
                out.append(hexDigitsUpper[Int(b & 0x0F)])
            }
        }
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
        appendFields(headers, to: &out)
        return out
    }

    /// One chunk: `<lowercase hex size>\r\n` + bytes + `\r\n`. Empty input gives empty output (an empty chunk
    /// would be the last-chunk and end the body).
    public static func chunk(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        guard !bytes.isEmpty else { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 20)
        out.append(contentsOf: String(bytes.count, radix: 16, uppercase: false).utf8)
        out.append(contentsOf: crlf)
        out.append(contentsOf: bytes)
        out.append(contentsOf: crlf)
        return out
    }

    /// Appends a chunk's size line, `<lowercase hex length>\r\n`, to `out` (the payload and its CRLF follow).
    public static func writeChunkHeader(length: Int, into out: inout ByteBuffer) {
        precondition(length > 0, "a chunk of length 0 would be the last-chunk")
        var shift = (Int.bitWidth - length.leadingZeroBitCount + 3) / 4 * 4
        out.reserveWritableBytes(shift / 4 + 2)
        while shift > 0 {
            shift -= 4
            out.writeByte(hexDigitsLower[(length >> shift) & 0xF])
        }
        out.writeByte(ASCII.cr)
        out.writeByte(ASCII.lf)
    }

    /// `0\r\n\r\n`: the last chunk with no trailers.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// The standard reason phrase for `status` (RFC 9110 §15 and common extensions), or "" when unknown.
    public static func reasonPhrase(for status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 102: "Processing"
        case 103: "Early Hints"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 203: "Non-Authoritative Information"
        case 204: "No Content"
        case 205: "Reset Content"
        case 206: "Partial Content"
        case 207: "Multi-Status"
        case 300: "Multiple Choices"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 303: "See Other"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 402: "Payment Required"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 406: "Not Acceptable"
        case 407: "Proxy Authentication Required"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 410: "Gone"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 415: "Unsupported Media Type"
        case 416: "Range Not Satisfiable"
        case 417: "Expectation Failed"
        case 421: "Misdirected Request"
        case 422: "Unprocessable Content"
        case 425: "Too Early"
        case 426: "Upgrade Required"
        case 428: "Precondition Required"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 451: "Unavailable For Legal Reasons"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        case 507: "Insufficient Storage"
        case 511: "Network Authentication Required"
        default: ""
        }
    }

    public static let crlf: [UInt8] = [ASCII.cr, ASCII.lf]
    private static let hexDigitsLower: [UInt8] = Array("0123456789abcdef".utf8)
    private static let hexDigitsUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// The status code's digits (100...999 without a String; anything else as `String(status)` would print it).
    private static func appendStatus(_ status: Int, to out: inout some HTTP1ByteSink) {
        guard (100...999).contains(status) else {
            out.appendBytes(String(status).utf8)
            return
        }
        out.appendByte(UInt8(ascii: "0") + UInt8(status / 100))
        out.appendByte(UInt8(ascii: "0") + UInt8(status / 10 % 10))
        out.appendByte(UInt8(ascii: "0") + UInt8(status % 10))
    }

    /// Bytes the fields take when serialised (at most: invalid fields are skipped), with the blank line.
    private static func fieldsSize(_ headers: HTTPHeaders) -> Int {
        var size = 2
        for field in headers.fields { size += field.name.utf8.count + field.value.utf8.count + 4 }
        return size
    }

    private static func appendFields(_ headers: HTTPHeaders, to out: inout some HTTP1ByteSink) {
        for field in headers.fields {
            let name = field.name.utf8.span
            guard !name.isEmpty else { continue }
            var token = true
            for i in name.indices where !HTTP1Syntax.isTChar(name[i]) {
                token = false
                break
            }
            guard token else { continue }
            out.appendBytes(field.name.utf8)
            out.appendByte(ASCII.colon)
            out.appendByte(ASCII.sp)
            appendText(field.value, to: &out)
            out.appendBytes(crlf)
        }
        out.appendBytes(crlf)
    }

    /// Appends `text`, with CR, LF and NUL replaced by spaces (no header injection). The common case, text without
    /// them, is one bulk copy.
    private static func appendText(_ text: String, to out: inout some HTTP1ByteSink) {
        let bytes = text.utf8.span
        var clean = true
        for i in bytes.indices where bytes[i] == ASCII.cr || bytes[i] == ASCII.lf || bytes[i] == ASCII.nul {
            clean = false
            break
        }
        if clean {
            out.appendBytes(text.utf8)
            return
        }
        for b in text.utf8 {
            out.appendByte(b == ASCII.cr || b == ASCII.lf || b == ASCII.nul ? ASCII.sp : b)
        }
    }
}

/// Where `HTTP1Serializer` writes: an array, or a connection's output `ByteBuffer` (copies by `memcpy`).
protocol HTTP1ByteSink {
    mutating func reserveAdditional(_ count: Int)
    mutating func appendByte(_ byte: UInt8)
    mutating func appendBytes(_ bytes: some Collection<UInt8>)
}

extension Array: HTTP1ByteSink where Element == UInt8 {
    mutating func reserveAdditional(_ count: Int) { reserveCapacity(self.count + count) }
    mutating func appendByte(_ byte: UInt8) { append(byte) }
    mutating func appendBytes(_ bytes: some Collection<UInt8>) { append(contentsOf: bytes) }
}

extension ByteBuffer: HTTP1ByteSink {
    mutating func reserveAdditional(_ count: Int) { reserveWritableBytes(count) }
    mutating func appendByte(_ byte: UInt8) { writeByte(byte) }
    mutating func appendBytes(_ bytes: some Collection<UInt8>) { writeBytes(bytes) }
}
