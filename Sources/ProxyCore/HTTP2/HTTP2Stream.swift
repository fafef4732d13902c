/// What the session knows about one client-initiated stream. Owned by `HTTP2Session`'s stream table
/// (no Swift pointers are stored as nghttp2 stream user data).
///
/// Kept small (a session's table holds up to MAX_CONCURRENT_STREAMS of these, most of them idle watches): the
/// fields are ordered so the one-byte ones share the tail, and a request body lives in a separate object.
struct HTTP2Stream {
    /// Response head being assembled from the current HEADERS block.
    var headers = HTTPHeaders()
    var headerBytes = 0
    /// Request body waiting for nghttp2 (nil: the request had no body).
    var body: HTTP2RequestBodySource?

    /// Flow-control ledger: response DATA bytes nghttp2 handed us for this stream that have not been passed to
    /// `nghttp2_session_consume` yet. Grows when a chunk is recorded, shrinks on `consume(stream:bytes:)`, and
    /// whatever is left is given back to the connection window exactly once, when the close is delivered.
    var unconsumed = 0

    var status: Int?
    var statusIsValid = true
    /// A final (non-1xx) response head was recorded; later HEADERS are trailers.
    var headRecorded = false

    /// We sent (or queued) RST_STREAM: further head/data/end events for it are dropped, only the close is delivered.
    var resetByUs = false
    /// nghttp2 reported the stream closed; the close event is pending delivery.
    var closeRecorded = false

    /// Records one field of the response HEADERS block, with RFC 9113 §6.5.2 size accounting. Returns false when
    /// the block exceeds `maxBytes` (the stream is then marked reset and its body discarded). Fields after the
    /// final head (trailers) and of streams we reset are ignored.
    mutating func receiveHeaderField(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>,
                                     maxBytes: Int) -> Bool {
        guard !resetByUs, !closeRecorded, !headRecorded else { return true }
        let size = headerBytes + name.count + value.count + 32
        guard size <= maxBytes else {
            markReset()
            return false
        }
        headerBytes = size
        if name.elementsEqual(":status".utf8) {
            if value.count == 3, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), status == nil {
                status = value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            } else {
                statusIsValid = false
            }
        } else if name.first == UInt8(ascii: ":") {
            // nghttp2 rejects other pseudo headers in responses; never forward one.
        } else {
            // An apiserver response has about 6 to 10 fields: room for them at once instead of growing 1, 2, 4, 8.
            if headers.isEmpty { headers.reserveCapacity(12) }
            headers.add(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
        }
        return true
    }

    /// We reset the stream (or are about to): its later events are dropped and its queued request body goes.
    mutating func markReset() {
        resetByUs = true
        body?.discard()
    }

    /// nghttp2 reported the stream closed: recorded once, and its queued request body goes. Returns false when the
    /// close was already recorded (nothing to deliver again).
    mutating func recordClose() -> Bool {
        guard !closeRecorded else { return false }
        closeRecorded = true
        body?.discard()
        return true
    }

    mutating func resetHeaderBlock() {
        status = nil
        statusIsValid = true
        headers = HTTPHeaders()
        headerBytes = 0
    }
}
