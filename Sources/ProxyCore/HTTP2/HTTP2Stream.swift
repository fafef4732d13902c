/// What the session knows about one client-initiated stream. Owned by `HTTP2Session`'s stream table
/// (no Swift pointers are stored as nghttp2 stream user data).
struct HTTP2Stream {
    /// Response head being assembled from the current HEADERS block.
    var status: Int?
    var statusIsValid = true
    var headers = HTTPHeaders()
    var headerBytes = 0
    /// A final (non-1xx) response head was recorded; later HEADERS are trailers.
    var headRecorded = false

    /// Request body waiting for nghttp2 (nil: the request had no body).
    var body: HTTP2RequestBodySource?

    /// Flow-control ledger: response DATA bytes nghttp2 handed us for this stream that have not been passed to
    /// `nghttp2_session_consume` yet. Grows when a chunk is recorded, shrinks on `consume(stream:bytes:)`, and
    /// whatever is left is given back to the connection window exactly once, when the close is delivered.
    var unconsumed = 0

    /// We sent (or queued) RST_STREAM: further head/data/end events for it are dropped, only the close is delivered.
    var resetByUs = false
    /// nghttp2 reported the stream closed; the close event is pending delivery.
    var closeRecorded = false

    mutating func resetHeaderBlock() {
        status = nil
        statusIsValid = true
        headers = HTTPHeaders()
        headerBytes = 0
    }
}
