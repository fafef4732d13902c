/// SPDY/3.1 framing (draft-mbelshe-httpbis-spdy-00 as amended for 3.1), the subset Kubernetes streaming uses:
/// `SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`, `HEADERS`, `WINDOW_UPDATE` and `DATA`.
/// Header blocks are zlib-compressed with the SPDY/3 dictionary, one zlib stream per direction and connection.

/// One name/value pair of a header block. Names are lower case on the wire; several values of one name travel
/// as one value joined with NUL bytes.
struct SPDYHeader: Equatable, Sendable {
    var name: String
    var value: String
}

struct SPDYHeaderBlock: Equatable, Sendable {
    var fields: [SPDYHeader] = []

    init(_ pairs: [(String, String)] = []) {
        fields = pairs.map { SPDYHeader(name: $0.0.lowercased(), value: $0.1) }
    }

    /// The first value of `name` (case-insensitive).
    subscript(name: String) -> String? {
        let name = name.lowercased()
        return fields.first { $0.name == name }?.value.split(separator: "\0", omittingEmptySubsequences: false).first.map(String.init)
    }
}

enum SPDYFrame: Equatable, Sendable {
    case synStream(streamID: UInt32, associatedTo: UInt32, priority: UInt8, fin: Bool, headers: SPDYHeaderBlock)
    case synReply(streamID: UInt32, fin: Bool, headers: SPDYHeaderBlock)
    case rstStream(streamID: UInt32, status: UInt32)
    case settings([Setting])
    case ping(id: UInt32)
    case goAway(lastGoodStreamID: UInt32, status: UInt32)
    case headers(streamID: UInt32, fin: Bool, headers: SPDYHeaderBlock)
    case windowUpdate(streamID: UInt32, delta: UInt32)
    case data(streamID: UInt32, fin: Bool, payload: [UInt8])

    struct Setting: Equatable, Sendable {
        var flags: UInt8
        var id: UInt32
        var value: UInt32
    }

    enum ControlType: UInt16 {
        case synStream = 1, synReply = 2, rstStream = 3, settings = 4, ping = 6, goAway = 7, headers = 8, windowUpdate = 9
    }

    static let version: UInt16 = 3
    static let flagFin: UInt8 = 0x01

    /// RST_STREAM status codes used here.
    static let statusProtocolError: UInt32 = 1
    static let statusCancel: UInt32 = 5
}

enum SPDYFramingError: Error, Equatable {
    case unsupportedVersion(UInt16)
    case invalidFrame(String)
    case frameTooLarge(Int)
}

/// The SPDY/3 header-compression dictionary: length-prefixed common header names and values, then a run of
/// status codes, dates and media types (the spec's §2.6.10.1 table, built from its parts).
enum SPDYDictionary {
    static let bytes: [UInt8] = {
        let words = [
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
            "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
            "content-base", "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
            "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
            "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
            "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
            "public", "set-cookie", "keep-alive", "origin",
        ]
        let tail =
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            + "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            + "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            + "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            + "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            + "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
        var bytes: [UInt8] = []
        for word in words {
            appendUInt32(&bytes, UInt32(word.utf8.count))
            bytes += word.utf8
        }
        bytes += tail.utf8
        return bytes
    }()
}

func appendUInt32(_ bytes: inout [UInt8], _ value: UInt32) {
    bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
}

private func readUInt32(_ bytes: ArraySlice<UInt8>, _ at: Int) -> UInt32 {
    let i = bytes.startIndex + at
    return UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
}

/// Parses frames out of a byte stream (bytes may arrive in any split). One per connection and direction.
final class SPDYFrameDecoder {
    static let maxFrameLength = 1 << 24 - 1
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private let inflater: ZlibInflater

    init() throws {
        inflater = try ZlibInflater(dictionary: SPDYDictionary.bytes)
    }

    func append(_ bytes: some Sequence<UInt8>) {
        if readIndex > 64 * 1024 && readIndex * 2 > buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer += bytes
    }

    /// The next complete frame, or nil when more bytes are needed.
    func next() throws -> SPDYFrame? {
        let available = buffer.count - readIndex
        guard available >= 8 else { return nil }
        let head = buffer[readIndex..<(readIndex + 8)]
        let length = Int(readUInt32(head, 4) & 0x00ff_ffff)
        let flags = head[head.startIndex + 4]
        guard available >= 8 + length else { return nil }
        let payload = buffer[(readIndex + 8)..<(readIndex + 8 + length)]
        readIndex += 8 + length
        let first = readUInt32(head, 0)
        if first & 0x8000_0000 == 0 {
            return .data(streamID: first & 0x7fff_ffff, fin: flags & SPDYFrame.flagFin != 0, payload: Array(payload))
        }
        let version = UInt16((first >> 16) & 0x7fff)
        guard version == SPDYFrame.version else { throw SPDYFramingError.unsupportedVersion(version) }
        let fin = flags & SPDYFrame.flagFin != 0
        func need(_ n: Int) throws {
            if payload.count < n { throw SPDYFramingError.invalidFrame("control frame type \(first & 0xffff) too short") }
        }
        switch SPDYFrame.ControlType(rawValue: UInt16(first & 0xffff)) {
        case .synStream:
            try need(10)
            let headers = try headerBlock(payload.dropFirst(10))
            let priority = payload[payload.startIndex + 8] >> 5
            return .synStream(
                streamID: readUInt32(payload, 0) & 0x7fff_ffff, associatedTo: readUInt32(payload, 4) & 0x7fff_ffff,
                priority: priority, fin: fin, headers: headers)
        case .synReply:
            try need(4)
            return .synReply(streamID: readUInt32(payload, 0) & 0x7fff_ffff, fin: fin, headers: try headerBlock(payload.dropFirst(4)))
        case .headers:
            try need(4)
            return .headers(streamID: readUInt32(payload, 0) & 0x7fff_ffff, fin: fin, headers: try headerBlock(payload.dropFirst(4)))
        case .rstStream:
            try need(8)
            return .rstStream(streamID: readUInt32(payload, 0) & 0x7fff_ffff, status: readUInt32(payload, 4))
        case .settings:
            try need(4)
            let count = Int(readUInt32(payload, 0))
            try need(4 + 8 * count)
            let settings = (0..<count).map { i in
                let word = readUInt32(payload, 4 + 8 * i)
                return SPDYFrame.Setting(flags: UInt8(word >> 24), id: word & 0x00ff_ffff, value: readUInt32(payload, 8 + 8 * i))
            }
            return .settings(settings)
        case .ping:
            try need(4)
            return .ping(id: readUInt32(payload, 0))
        case .goAway:
            try need(8)
            return .goAway(lastGoodStreamID: readUInt32(payload, 0) & 0x7fff_ffff, status: readUInt32(payload, 4))
        case .windowUpdate:
            try need(8)
            return .windowUpdate(streamID: readUInt32(payload, 0) & 0x7fff_ffff, delta: readUInt32(payload, 4) & 0x7fff_ffff)
        case nil:
            // Unknown control frames (NOOP, CREDENTIAL) are ignored, as the spec asks.
            return try next()
        }
    }

    private func headerBlock(_ compressed: ArraySlice<UInt8>) throws -> SPDYHeaderBlock {
        let raw = try inflater.decompress(Array(compressed))[...]
        guard raw.count >= 4 else { throw SPDYFramingError.invalidFrame("header block too short") }
        let count = Int(readUInt32(raw, 0))
        var offset = 4
        var block = SPDYHeaderBlock()
        func string() throws -> String {
            guard raw.count >= offset + 4 else { throw SPDYFramingError.invalidFrame("header block truncated") }
            let length = Int(readUInt32(raw, offset))
            offset += 4
            guard raw.count >= offset + length else { throw SPDYFramingError.invalidFrame("header block truncated") }
            defer { offset += length }
            return String(decoding: raw[(raw.startIndex + offset)..<(raw.startIndex + offset + length)], as: UTF8.self)
        }
        for _ in 0..<count {
            let name = try string()
            let value = try string()
            block.fields.append(SPDYHeader(name: name.lowercased(), value: value))
        }
        return block
    }
}

/// Serializes frames, compressing header blocks. One per connection and direction.
final class SPDYFrameEncoder {
    private let deflater: ZlibDeflater

    init() throws {
        deflater = try ZlibDeflater(dictionary: SPDYDictionary.bytes)
    }

    func encode(_ frame: SPDYFrame) throws -> [UInt8] {
        switch frame {
        case .data(let streamID, let fin, let payload):
            guard payload.count <= SPDYFrameDecoder.maxFrameLength else { throw SPDYFramingError.frameTooLarge(payload.count) }
            var out: [UInt8] = []
            out.reserveCapacity(8 + payload.count)
            appendUInt32(&out, streamID & 0x7fff_ffff)
            appendUInt32(&out, UInt32(fin ? SPDYFrame.flagFin : 0) << 24 | UInt32(payload.count))
            out += payload
            return out
        case .synStream(let streamID, let associatedTo, let priority, let fin, let headers):
            var body: [UInt8] = []
            appendUInt32(&body, streamID & 0x7fff_ffff)
            appendUInt32(&body, associatedTo & 0x7fff_ffff)
            body += [priority << 5, 0]
            body += try compress(headers)
            return control(.synStream, flags: fin ? SPDYFrame.flagFin : 0, body)
        case .synReply(let streamID, let fin, let headers):
            var body: [UInt8] = []
            appendUInt32(&body, streamID & 0x7fff_ffff)
            body += try compress(headers)
            return control(.synReply, flags: fin ? SPDYFrame.flagFin : 0, body)
        case .headers(let streamID, let fin, let headers):
            var body: [UInt8] = []
            appendUInt32(&body, streamID & 0x7fff_ffff)
            body += try compress(headers)
            return control(.headers, flags: fin ? SPDYFrame.flagFin : 0, body)
        case .rstStream(let streamID, let status):
            var body: [UInt8] = []
            appendUInt32(&body, streamID & 0x7fff_ffff)
            appendUInt32(&body, status)
            return control(.rstStream, flags: 0, body)
        case .settings(let settings):
            var body: [UInt8] = []
            appendUInt32(&body, UInt32(settings.count))
            for setting in settings {
                appendUInt32(&body, UInt32(setting.flags) << 24 | setting.id & 0x00ff_ffff)
                appendUInt32(&body, setting.value)
            }
            return control(.settings, flags: 0, body)
        case .ping(let id):
            var body: [UInt8] = []
            appendUInt32(&body, id)
            return control(.ping, flags: 0, body)
        case .goAway(let lastGoodStreamID, let status):
            var body: [UInt8] = []
            appendUInt32(&body, lastGoodStreamID & 0x7fff_ffff)
            appendUInt32(&body, status)
            return control(.goAway, flags: 0, body)
        case .windowUpdate(let streamID, let delta):
            var body: [UInt8] = []
            appendUInt32(&body, streamID & 0x7fff_ffff)
            appendUInt32(&body, delta & 0x7fff_ffff)
            return control(.windowUpdate, flags: 0, body)
        }
    }

    private func control(_ type: SPDYFrame.ControlType, flags: UInt8, _ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8 + body.count)
        appendUInt32(&out, 0x8000_0000 | UInt32(SPDYFrame.version) << 16 | UInt32(type.rawValue))
        appendUInt32(&out, UInt32(flags) << 24 | UInt32(body.count))
        out += body
        return out
    }

    private func compress(_ headers: SPDYHeaderBlock) throws -> [UInt8] {
        var raw: [UInt8] = []
        appendUInt32(&raw, UInt32(headers.fields.count))
        for field in headers.fields {
            appendUInt32(&raw, UInt32(field.name.utf8.count))
            raw += field.name.utf8
            appendUInt32(&raw, UInt32(field.value.utf8.count))
            raw += field.value.utf8
        }
        return try deflater.compress(raw)
    }
}
