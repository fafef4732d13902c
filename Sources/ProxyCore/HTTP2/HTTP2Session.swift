import CNghttp2

/// Receives what an `HTTP2Session` learned from the upstream, in wire order.
///
/// Events are only delivered from `feed(_:)`, `takeOutput(max:)` and `abortAllStreams(errorCode:)`, never from
/// inside nghttp2. A delegate may call any session method from these
/// callbacks (`consume`, `resetStream`, `submitRequest`, even `feed`); events caused by such calls are queued and
/// delivered after the current one, so the order seen here is always the order nghttp2 reported them.
public protocol HTTP2SessionDelegate: AnyObject {
    /// The final (non-1xx) response head of `stream`; once per stream. Interim 1xx heads are not reported.
    func session(_ s: HTTP2Session, didReceiveResponseHead status: Int, headers: HTTPHeaders, stream: Int32)
    /// Response body bytes: a slice of the buffer given to `feed` (no copy) when nghttp2 handed the payload in place,
    /// else a copy. Call `consume(stream:bytes:)` once they reached the client.
    func session(_ s: HTTP2Session, didReceiveData bytes: ByteBuffer, stream: Int32)
    /// END_STREAM received (trailers, if any, are dropped).
    func session(_ s: HTTP2Session, streamDidEnd stream: Int32)
    /// Always the last event of a stream; `errorCode` 0 is NO_ERROR, else the RST_STREAM / GOAWAY code.
    func session(_ s: HTTP2Session, streamDidClose stream: Int32, errorCode: UInt32)
    /// The upstream sent GOAWAY. Streams above `lastStreamID` are closed with REFUSED_STREAM (7) and may be retried.
    func session(_ s: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: UInt32)
    func sessionDidReceivePingAck(_ s: HTTP2Session)
    /// A SETTINGS frame arrived; `remoteMaxConcurrentStreams` may have changed.
    func sessionRemoteSettingsChanged(_ s: HTTP2Session)
}

/// A client-side HTTP/2 session over nghttp2: bytes in (`feed`), bytes out (`takeOutput`). Never touches an fd.
///
/// Confined to one event-loop queue: every method must be called on that queue. It is `@unchecked Sendable` only so
/// that the loop's `@Sendable` closures (timers, `execute`) can carry it; nothing in it is synchronised.
///
/// Ownership: the session owns its `nghttp2_session`, creates it in `init` and deletes it in `deinit`; the pointer
/// never leaves this class. nghttp2's `user_data` is an unretained pointer to `self`, which is sound because the
/// `nghttp2_session` cannot outlive `self`. Per-stream state lives in a table here, never in nghttp2 stream user data.
/// The delegate is held weakly (it normally owns the session).
///
/// Re-entrancy: nghttp2 callbacks only record events; they never call back into nghttp2 or the delegate. The
/// recorded events are delivered after `mem_recv`/`mem_send` returned, so the delegate can never re-enter nghttp2
/// while it is parsing or serialising.
///
/// Flow control (automatic window updates are off): response DATA counts against the stream and connection windows
/// until the owner calls `consume(stream:bytes:)`, which should happen once the bytes were written to the client.
/// Invariant: for every stream, `unconsumed` = DATA payload bytes nghttp2 handed us − bytes passed to
/// `nghttp2_session_consume`. When the stream's close is delivered, whatever is still unconsumed is returned to the
/// connection window with `nghttp2_session_consume_connection`, and the stream leaves the table, so later
/// `consume` calls for it are ignored: every byte is credited back exactly once. (DATA that arrives after nghttp2
/// closed a stream, and padding, are credited by nghttp2 itself.)
public final class HTTP2Session: @unchecked Sendable {
    public weak var delegate: (any HTTP2SessionDelegate)?

    /// The nghttp2 session. Owned; deleted in `deinit`.
    private let session: OpaquePointer

    // State shared with HTTP2Session+Callbacks.swift (internal, not private, for that file only).
    var streams = StreamTable<HTTP2Stream>()
    var pendingEvents: [HTTP2SessionEvent] = []
    /// First Swift-side failure inside a callback; thrown after `mem_recv` returns.
    var pendingError: HTTP2Error?
    /// Last problem nghttp2 reported through the error / invalid-frame callbacks (for error detail only).
    var lastLibraryError: (code: Int32, message: String)?
    /// Set when nghttp2 sent a GOAWAY with an error code: it detected a connection error and terminated.
    var libraryGoAwayErrorCode: UInt32?
    /// A DATA frame was serialised by the current `mem_send` (lets `feed` flush control frames only).
    var sentDataFrame = false
    var remoteSettingsReceived = false
    var goAwayReceived = false
    /// The highest stream whose request HEADERS were serialised for the socket.
    var lastSentRequestStreamID: Int32 = 0
    /// Last-Stream-ID of the most recent GOAWAY received, nil if none.
    public internal(set) var lastGoAwayStreamID: Int32?

    /// The buffer `mem_recv` is parsing and the address of its first readable byte (as an integer, never
    /// dereferenced), so a DATA payload nghttp2 hands us in place becomes a slice of it. Only set during `feed`.
    var input = ByteBuffer()
    var inputAddress = 0

    /// Output serialised by nghttp2 but not yet handed to the caller, in wire order.
    private var outbox: [UInt8] = []
    private var isDelivering = false
    private var inNghttp2 = false
    private var localGoAway = false
    private var aborted = false
    /// nghttp2 returned a fatal error: the session must not be used any more (only deleted).
    private var isFatal = false
    /// Once set, `feed` throws it again; the session is finished.
    public private(set) var error: HTTP2Error?

    /// Response header blocks larger than this reset the stream (INTERNAL_ERROR), so a peer cannot make us buffer
    /// unbounded header data.
    static let maxResponseHeaderBytes = 256 * 1024

    /// Creates the session and queues the connection preface, SETTINGS (ENABLE_PUSH=0,
    /// INITIAL_WINDOW_SIZE=`streamWindow`) and a connection WINDOW_UPDATE raising the window to `connectionWindow`.
    /// Nothing is written anywhere: take the bytes with `takeOutput(max:)`.
    /// - Parameters:
    ///   - streamWindow: per-stream receive window, 1 ... 2^31-1 (default 1 MiB).
    ///   - connectionWindow: connection receive window; values at or below the default 65535 leave it unchanged.
    /// - Throws: `HTTP2Error` if nghttp2 cannot create the session or a window is out of range.
    public init(delegate: any HTTP2SessionDelegate, streamWindow: Int32 = 1 << 20,
                connectionWindow: Int32 = 16 << 20) throws(HTTP2Error) {
        guard streamWindow > 0, connectionWindow > 0 else {
            throw HTTP2Error(code: HTTP2Error.invalidArgumentCode, function: "HTTP2Session.init",
                             detail: "window sizes must be positive")
        }
        self.delegate = delegate
        var callbacks: OpaquePointer?
        var rv = nghttp2_session_callbacks_new(&callbacks)
        guard rv == 0, let callbacks else {
            throw HTTP2Error(code: rv, function: "nghttp2_session_callbacks_new")
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        HTTP2Session.installCallbacks(callbacks)

        var option: OpaquePointer?
        rv = nghttp2_option_new(&option)
        guard rv == 0, let option else { throw HTTP2Error(code: rv, function: "nghttp2_option_new") }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)

        var created: OpaquePointer?
        rv = nghttp2_session_client_new2(&created, callbacks, nil, option)
        guard rv == 0, let created else { throw HTTP2Error(code: rv, function: "nghttp2_session_client_new2") }
        session = created
        // All stored properties are set: from here on `deinit` runs (and deletes the session) if we throw.
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())

        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: UInt32(streamWindow)),
        ]
        rv = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        guard rv == 0 else { throw HTTP2Error(code: rv, function: "nghttp2_submit_settings") }
        if connectionWindow > 65_535 {
            rv = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                       connectionWindow)
            guard rv == 0 else { throw HTTP2Error(code: rv, function: "nghttp2_session_set_local_window_size") }
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: - Requests

    /// Header names that are connection-specific in HTTP/1.1 and forbidden in HTTP/2 (RFC 9113 §8.2.2), plus
    /// `host`, which the caller maps to `:authority`.
    static let droppedRequestHeaders: [String] = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host",
    ]

    /// Queues a request (HEADERS, and DATA later if `hasBody`).
    ///
    /// Pseudo headers come first, from the arguments. Regular names are lowercased; connection-specific fields
    /// (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, `host`, and `te` unless it
    /// is exactly `trailers`) and any name starting with `:` are dropped. nghttp2 copies names and values.
    /// - Parameter hasBody: false sends END_STREAM with the HEADERS; true expects `appendBody` / `endBody`.
    /// - Returns: the new stream id.
    /// - Throws: `HTTP2Error` if the session is going away or failed, a field is invalid (CR, LF, NUL in a value,
    ///   a bad name, an empty path), or nghttp2 refuses the request.
    public func submitRequest(method: String, scheme: String, authority: String, path: String,
                              headers: HTTPHeaders, hasBody: Bool) throws(HTTP2Error) -> Int32 {
        if let error { throw error }
        guard !isGoingAway else {
            throw HTTP2Error(code: HTTP2Error.startStreamNotAllowedCode, function: "submitRequest",
                             detail: goAwayReceived ? "upstream sent GOAWAY" : "session is going away")
        }
        guard !method.isEmpty, !path.isEmpty else {
            throw HTTP2Error(code: HTTP2Error.invalidArgumentCode, function: "submitRequest",
                             detail: "empty :method or :path")
        }
        // Every name and value goes into one buffer (names lowercased in place), which keeps them alive for the
        // nghttp2_submit_request call; `spans` locates them. No array per field: this runs for every request.
        var storage: [UInt8] = []
        var size = 40 + method.utf8.count + scheme.utf8.count + authority.utf8.count + path.utf8.count
        for field in headers.fields { size += field.name.utf8.count + field.value.utf8.count }
        storage.reserveCapacity(size)
        var spans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []
        spans.reserveCapacity(4 + headers.count)
        func add(_ name: some Collection<UInt8>, _ value: some Collection<UInt8>, lowercasing: Bool = false) {
            let nameAt = storage.count
            storage.append(contentsOf: name)
            if lowercasing {
                for i in nameAt..<storage.count where storage[i] &- UInt8(ascii: "A") < 26 { storage[i] |= 0x20 }
            }
            let valueAt = storage.count
            storage.append(contentsOf: value)
            spans.append((nameAt, valueAt - nameAt, valueAt, storage.count - valueAt))
        }
        add(":method".utf8, method.utf8)
        add(":scheme".utf8, scheme.utf8)
        add(":authority".utf8, authority.utf8)
        add(":path".utf8, path.utf8)
        for field in headers.fields {
            let name = field.name
            if name.utf8.first == UInt8(ascii: ":") { continue }
            if Self.droppedRequestHeaders.contains(where: { name.equalsIgnoringASCIICase($0) }) { continue }
            if name.equalsIgnoringASCIICase("te") {
                // Only "TE: trailers" is allowed in HTTP/2 (RFC 9113 §8.2.2).
                if field.value[...].withoutSurroundingSpaces().lowercased() == "trailers" {
                    add("te".utf8, "trailers".utf8)
                }
                continue
            }
            add(name.utf8, field.value.utf8, lowercasing: true)
        }

        var invalidField: Int?
        let streamID = storage.withUnsafeMutableBufferPointer { buffer -> Int32 in
            let base = buffer.baseAddress!   // never empty: ":method" is in it
            for (index, span) in spans.enumerated() {
                // nghttp2_check_header_name rejects the leading ':' of pseudo headers; check what follows it.
                let skip = index < 4 ? 1 : 0
                guard nghttp2_check_header_name(base + span.name + skip, span.nameLength - skip) != 0,
                      nghttp2_check_header_value(base + span.value, span.valueLength) != 0
                else {
                    invalidField = index
                    return 0
                }
            }
            var nva = spans.map {
                nghttp2_nv(name: base + $0.name, value: base + $0.value, namelen: $0.nameLength,
                           valuelen: $0.valueLength, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return CProxy_nghttp2_submit_request(session, &nva, nva.count,
                                                 hasBody ? HTTP2Session.bodyReadCallback : nil)
        }
        if let invalidField {
            let span = spans[invalidField]
            let name = String(decoding: storage[span.name..<(span.name + span.nameLength)], as: UTF8.self)
            throw HTTP2Error(code: HTTP2Error.invalidHeaderBlockCode, function: "submitRequest",
                             detail: "invalid header field \(name)")
        }
        guard streamID > 0 else { throw HTTP2Error(code: streamID, function: "nghttp2_submit_request") }
        var stream = HTTP2Stream()
        if hasBody { stream.body = HTTP2RequestBodySource() }
        streams[streamID] = stream
        return streamID
    }

    /// Queues request-body bytes for `stream` and wakes nghttp2's data provider. Ignored for unknown, closed or
    /// reset streams, requests without a body, and after `endBody`.
    public func appendBody(_ bytes: [UInt8], stream: Int32) {
        guard !bytes.isEmpty, streams[stream]?.body?.isEnded == false else { return }
        streams[stream]!.body!.append(bytes)
        resumeData(stream)
    }

    /// Ends the request body: END_STREAM goes out after the queued bytes.
    public func endBody(stream: Int32) {
        guard streams[stream]?.body?.isEnded == false else { return }
        streams[stream]!.body!.end()
        resumeData(stream)
    }

    /// Request-body bytes queued here and not yet handed to nghttp2. They leave as the upstream's flow-control
    /// window allows; check after `takeOutput` to resume reading the client (backpressure).
    public func bufferedBodyBytes(stream: Int32) -> Int {
        streams[stream]?.body?.bufferedBytes ?? 0
    }

    private func resumeData(_ stream: Int32) {
        guard !isFatal else { return }
        // NGHTTP2_ERR_INVALID_ARGUMENT just means the stream is not deferred (yet); nothing to do then.
        check(nghttp2_session_resume_data(session, stream), "nghttp2_session_resume_data")
    }

    // MARK: - Flow control and stream control

    /// Gives `bytes` of `stream`'s received DATA back to the stream and connection windows (WINDOW_UPDATE follows
    /// once enough is consumed). Call when those bytes were written to the client. More than was received is
    /// clamped; streams whose close was already delivered are ignored (their bytes were credited then).
    public func consume(stream: Int32, bytes: Int) {
        guard bytes > 0, !isFatal, let pending = streams[stream]?.unconsumed, pending > 0 else { return }
        let n = min(bytes, pending)
        streams.update(stream) { $0.unconsumed = pending - n }
        check(nghttp2_session_consume(session, stream, n), "nghttp2_session_consume")
    }

    /// Sets `stream`'s receive window to `size` bytes: a larger one is announced at once (WINDOW_UPDATE); a smaller
    /// one takes effect as the upstream uses up what it was already granted (nghttp2 withholds WINDOW_UPDATE until
    /// then). Ignored for unknown or closed streams.
    public func setReceiveWindow(stream: Int32, size: Int32) {
        guard size > 0, !isFatal, let state = streams[stream], !state.closeRecorded, !state.resetByUs else { return }
        check(nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, size),
              "nghttp2_session_set_local_window_size")
    }

    /// Whether the HEADERS of `stream` were serialised for the socket: until then nothing of the request left proxyd,
    /// so it may be sent elsewhere if the connection is lost.
    public func requestWasSent(stream: Int32) -> Bool {
        stream <= lastSentRequestStreamID
    }

    /// Sends RST_STREAM (default CANCEL). From now on only `streamDidClose` is delivered for the stream; its
    /// buffered request body is dropped and its unconsumed bytes are credited to the connection when it closes.
    /// A no-op for unknown or already reset streams. If nghttp2 already saw the stream close (its close is
    /// queued behind the event being delivered), no RST is sent: the remaining head/data/end events are dropped
    /// and `streamDidClose` reports the code the stream really closed with.
    public func resetStream(_ stream: Int32, errorCode: UInt32 = 8 /* CANCEL */) {
        guard let state = streams[stream], !state.resetByUs else { return }
        if state.closeRecorded {
            streams.update(stream) { $0.resetByUs = true }
            return
        }
        submitReset(stream, errorCode: errorCode)
    }

    func submitReset(_ stream: Int32, errorCode: UInt32) {
        streams.update(stream) { $0.markReset() }
        guard !isFatal else { return }
        check(nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode),
              "nghttp2_submit_rst_stream")
    }

    /// Queues a PING; `sessionDidReceivePingAck` follows when the upstream answers.
    public func ping() {
        guard !isFatal else { return }
        check(nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil), "nghttp2_submit_ping")
    }

    /// Graceful shutdown: queues GOAWAY(NO_ERROR) and opens no new streams; streams in flight run to completion.
    /// When none are left, `wantsReadOrWrite` turns false and the owner closes the connection.
    public func goAway() {
        guard !localGoAway, !isFatal else { return }
        localGoAway = true
        check(nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                    nghttp2_session_get_last_proc_stream_id(session), HTTP2ErrorCode.noError, nil, 0),
              "nghttp2_submit_goaway")
    }

    /// The transport is gone (EOF, I/O or TLS error): delivers `streamDidClose(errorCode)` for every stream not
    /// closed yet and stops opening streams. Call once, before dropping the session.
    public func abortAllStreams(errorCode: UInt32 = 2 /* INTERNAL_ERROR */) {
        aborted = true
        closeAllStreams(errorCode: errorCode)
        deliverEvents()
    }

    // MARK: - Bytes in, bytes out

    /// Parses upstream bytes, then delivers the recorded events to the delegate in order, then serialises pending
    /// control frames (SETTINGS ACK, WINDOW_UPDATE, PING ACK, RST_STREAM, GOAWAY) so a protocol error nghttp2
    /// detected is noticed here. Call `takeOutput` afterwards.
    /// - Throws: `HTTP2Error` when the upstream violated HTTP/2 (nghttp2 queued GOAWAY with an error code, which
    ///   `takeOutput` still returns), when nghttp2 failed fatally, or when the session had failed before. Before
    ///   throwing, every open stream gets `streamDidClose`.
    public func feed(_ bytes: ArraySlice<UInt8>) throws(HTTP2Error) {
        try feed(ByteBuffer(bytes: bytes))
    }

    /// As `feed(_:)` for array slices; DATA payloads are delivered as slices of `bytes` (shared storage).
    public func feed(_ bytes: ByteBuffer) throws(HTTP2Error) {
        if let error { throw error }
        withExtendedLifetime(self) {
            input = bytes
            let rv = bytes.withUnsafeReadableBytes { buffer -> Int in
                inputAddress = Int(bitPattern: buffer.baseAddress)
                inNghttp2 = true
                defer { inNghttp2 = false }
                return CProxy_nghttp2_mem_recv(session, buffer.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                               buffer.count)
            }
            input = ByteBuffer()
            inputAddress = 0
            if let pendingError {
                isFatal = true
                fail(pendingError)
            } else if rv < 0 {
                isFatal = true   // every mem_recv error (NOMEM, CALLBACK_FAILURE, FLOODED...) ends the session
                fail(HTTP2Error(code: Int32(rv), function: "nghttp2_session_mem_recv"))
            } else {
                send(max: 256 * 1024, stopAfterData: true)
            }
            deliverEvents()
        }
        if let error { throw error }
    }

    /// Serialises pending frames (including request-body DATA) into one array, delivering any events that
    /// sending caused (a stream closes when our END_STREAM or RST_STREAM goes out). Stops when nghttp2 has
    /// nothing more to send or once `max` is reached (it may exceed `max` by at most one frame).
    public func takeOutput(max: Int = 256 * 1024) -> [UInt8] {
        withExtendedLifetime(self) {
            while true {
                send(max: max, stopAfterData: false)
                // Nested in a delivery (a delegate called takeOutput): the outer loop delivers.
                if pendingEvents.isEmpty || isDelivering { break }
                deliverEvents()
                // The delegate may have queued frames (submit, reset, consume): go round once more.
                if outbox.count >= max || isFatal { break }
            }
        }
        let output = outbox
        outbox = []
        return output
    }

    /// False once the session is finished: nghttp2 wants neither to read nor to write (both sides sent or received
    /// GOAWAY and no streams are left, or a terminating GOAWAY went out) and no output is waiting.
    public var wantsReadOrWrite: Bool {
        if !outbox.isEmpty { return true }
        if isFatal || aborted { return false }
        return nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    // MARK: - Stream accounting

    /// The upstream's SETTINGS_MAX_CONCURRENT_STREAMS. 100 until its SETTINGS arrive, and 100 when it announces
    /// more than 1000 (or no limit, which nghttp2 reports as 2^32-1).
    public var remoteMaxConcurrentStreams: Int {
        guard remoteSettingsReceived else { return 100 }
        let value = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        return value > 1000 ? 100 : Int(value)
    }

    /// Streams submitted whose close has not been delivered yet.
    public var activeStreamCount: Int { streams.count }

    /// GOAWAY was received or sent, or the session failed or was aborted: open no new streams here.
    public var isGoingAway: Bool { goAwayReceived || localGoAway || error != nil || aborted || isFatal }

    /// A new stream may be opened now: not going away, stream ids left, and below the upstream's concurrency limit.
    public var canOpenStream: Bool {
        !isGoingAway && nghttp2_session_check_request_allowed(session) != 0
            && activeStreamCount < remoteMaxConcurrentStreams
    }

    // MARK: - Internals

    private func send(max: Int, stopAfterData: Bool) {
        guard !isFatal else { return }
        precondition(!inNghttp2, "HTTP2Session: mem_send re-entered from an nghttp2 callback")
        while outbox.count < max {
            var data: UnsafePointer<UInt8>?
            sentDataFrame = false
            inNghttp2 = true
            let n = CProxy_nghttp2_mem_send(session, &data)
            inNghttp2 = false
            if n < 0 {
                isFatal = true
                fail(HTTP2Error(code: Int32(n), function: "nghttp2_session_mem_send"))
                return
            }
            guard n > 0, let data else { break }
            outbox.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
            if let pendingError {
                isFatal = true
                fail(pendingError)
                return
            }
            if stopAfterData && sentDataFrame { break }
        }
        if let code = libraryGoAwayErrorCode, error == nil {
            let libraryCode = lastLibraryError?.code ?? Self.libraryCode(forH2Error: code)
            var detail = "upstream violated HTTP/2, sent GOAWAY(\(HTTP2ErrorCode.name(code)))"
            if let message = lastLibraryError?.message { detail += ": \(message)" }
            fail(HTTP2Error(code: libraryCode, function: "nghttp2_session_mem_recv", detail: detail),
                 streamErrorCode: code)
        }
    }

    /// Non-fatal nghttp2 results (e.g. INVALID_ARGUMENT from resume_data on a stream that is not deferred) are
    /// expected and ignored; a fatal one (NOMEM...) ends the session: streams are closed on the next delivery.
    private func check(_ rv: Int32, _ function: String) {
        guard rv < 0, nghttp2_is_fatal(rv) != 0 else { return }
        isFatal = true
        fail(HTTP2Error(code: rv, function: function))
    }

    /// Records the first failure and closes every stream (events are delivered by the caller).
    private func fail(_ failure: HTTP2Error, streamErrorCode: UInt32 = 2 /* INTERNAL_ERROR */) {
        if error == nil { error = failure }
        closeAllStreams(errorCode: streamErrorCode)
    }

    private func closeAllStreams(errorCode: UInt32) {
        for id in streams.sortedIDs() {
            if streams.update(id, { $0.recordClose() }) == true {
                pendingEvents.append(.close(stream: id, errorCode: errorCode))
            }
        }
    }

    private static func libraryCode(forH2Error code: UInt32) -> Int32 {
        switch code {
        case HTTP2ErrorCode.flowControlError: NGHTTP2_ERR_FLOW_CONTROL.rawValue
        case HTTP2ErrorCode.frameSizeError: NGHTTP2_ERR_FRAME_SIZE_ERROR.rawValue
        case HTTP2ErrorCode.compressionError: NGHTTP2_ERR_HEADER_COMP.rawValue
        default: NGHTTP2_ERR_PROTO.rawValue
        }
    }

    /// Delivers recorded events in order. Not re-entrant: a nested call (from a delegate method) returns at once
    /// and the outer loop delivers whatever the nested work recorded, after the current event.
    private func deliverEvents() {
        guard !isDelivering else { return }
        isDelivering = true
        defer { isDelivering = false }
        var index = 0
        while index < pendingEvents.count {
            let event = pendingEvents[index]
            index += 1
            deliver(event)
        }
        pendingEvents.removeAll(keepingCapacity: true)
    }

    private func deliver(_ event: HTTP2SessionEvent) {
        switch event {
        case let .head(stream, status, headers):
            guard streams[stream]?.resetByUs == false else { return }
            delegate?.session(self, didReceiveResponseHead: status, headers: headers, stream: stream)
        case let .data(stream, bytes):
            guard streams[stream]?.resetByUs == false else { return }
            delegate?.session(self, didReceiveData: bytes, stream: stream)
        case let .end(stream):
            guard streams[stream]?.resetByUs == false else { return }
            delegate?.session(self, streamDidEnd: stream)
        case let .reset(stream, errorCode):
            guard streams[stream]?.closeRecorded == false else { return }
            submitReset(stream, errorCode: errorCode)
        case let .close(stream, errorCode):
            guard let state = streams.removeValue(forID: stream) else { return }
            releaseConnectionWindow(state.unconsumed)
            delegate?.session(self, streamDidClose: stream, errorCode: errorCode)
        case let .releaseConnectionWindow(bytes):
            releaseConnectionWindow(bytes)
        case let .goAway(lastStreamID, errorCode):
            delegate?.session(self, didReceiveGoAway: lastStreamID, errorCode: errorCode)
        case .pingAck:
            delegate?.sessionDidReceivePingAck(self)
        case .remoteSettings:
            delegate?.sessionRemoteSettingsChanged(self)
        }
    }

    private func releaseConnectionWindow(_ bytes: Int) {
        guard bytes > 0, !isFatal else { return }
        check(nghttp2_session_consume_connection(session, bytes), "nghttp2_session_consume_connection")
    }
}

/// What a callback recorded, delivered to the delegate after nghttp2 returned.
enum HTTP2SessionEvent {
    case head(stream: Int32, status: Int, headers: HTTPHeaders)
    case data(stream: Int32, bytes: ByteBuffer)
    case end(stream: Int32)
    /// Reset a stream whose response was malformed (an action, not a delegate event).
    case reset(stream: Int32, errorCode: UInt32)
    case close(stream: Int32, errorCode: UInt32)
    /// DATA for a stream not in the table: give it straight back to the connection window.
    case releaseConnectionWindow(Int)
    case goAway(lastStreamID: Int32, errorCode: UInt32)
    case pingAck
    case remoteSettings
}
