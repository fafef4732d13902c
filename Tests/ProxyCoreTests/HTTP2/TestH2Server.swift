import CNghttp2
@testable import ProxyCore

/// A test-only HTTP/2 *server* on nghttp2, driven in memory: bytes from the client's `takeOutput()` go into
/// `receive(_:)`, bytes from `send()` go into the client's `feed(_:)`. Single-threaded, one test at a time.
///
/// Unlike the session under test it may call `nghttp2_submit_*` from inside callbacks (nghttp2 allows that);
/// handlers run from `receive(_:)` after mem_recv returned.
final class TestH2Server {
    struct Request {
        var headers: [(name: String, value: String)] = []
        var bodyCount = 0
        var checksum = Checksum()
        var ended = false
        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    }

    private struct ResponseBody {
        var bytes: [UInt8]
        var offset = 0
        var trailers: [(String, String)]?
    }

    let session: OpaquePointer
    private(set) var requests: [Int32: Request] = [:]
    /// Stream ids in the order their HEADERS arrived.
    private(set) var requestOrder: [Int32] = []
    private(set) var closedStreams: [Int32: UInt32] = [:]
    private(set) var goAwaysReceived: [UInt32] = []
    private var bodies: [Int32: ResponseBody] = [:]
    private var completed: [Int32] = []
    /// Called (after mem_recv returned) for each request whose END_STREAM arrived.
    var onRequestEnd: ((TestH2Server, Int32) -> Void)?

    init(settings: [(id: nghttp2_settings_id, value: UInt32)] = []) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, user in
            let id = frame!.pointee.hd.stream_id
            let server = TestH2Server.from(user)
            if frame!.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), server.requests[id] == nil {
                server.requests[id] = Request()
                server.requestOrder.append(id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, user in
            let id = frame!.pointee.hd.stream_id
            TestH2Server.from(user).requests[id]?.headers.append(
                (String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
                 String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)))
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, id, data, length, user in
            let server = TestH2Server.from(user)
            let bytes = UnsafeBufferPointer(start: data, count: length)
            server.requests[id]?.bodyCount += length
            server.requests[id]?.checksum.update(bytes)
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, user in
            let server = TestH2Server.from(user)
            let hd = frame!.pointee.hd
            if hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) {
                server.goAwaysReceived.append(frame!.pointee.goaway.error_code)
            }
            if (hd.type == UInt8(NGHTTP2_HEADERS.rawValue) || hd.type == UInt8(NGHTTP2_DATA.rawValue)),
               hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
                server.requests[hd.stream_id]?.ended = true
                server.completed.append(hd.stream_id)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
            let server = TestH2Server.from(user)
            server.closedStreams[id] = code
            server.bodies[id] = nil
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_max_send_header_block_length(option, 1 << 20)   // default 64 KiB; tests send more
        var created: OpaquePointer?
        nghttp2_session_server_new2(&created, callbacks, nil, option)
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)
        session = created!
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        var entries = settings.map { nghttp2_settings_entry(settings_id: Int32($0.id.rawValue), value: $0.value) }
        nghttp2_submit_settings(session, 0, &entries, entries.count)
    }

    deinit { nghttp2_session_del(session) }

    private static func from(_ user: UnsafeMutableRawPointer?) -> TestH2Server {
        Unmanaged<TestH2Server>.fromOpaque(user!).takeUnretainedValue()
    }

    struct ServerError: Error { let code: Int }

    func receive(_ bytes: [UInt8]) throws {
        let rv = bytes.withUnsafeBufferPointer { CProxy_nghttp2_mem_recv(session, $0.baseAddress, $0.count) }
        if rv < 0 { throw ServerError(code: rv) }
        let done = completed
        completed = []
        for id in done { onRequestEnd?(self, id) }
    }

    func send() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var data: UnsafePointer<UInt8>?
            let n = CProxy_nghttp2_mem_send(session, &data)
            if n <= 0 { break }
            out.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
        }
        return out
    }

    /// Queues a response. `status: nil` omits `:status` (malformed). `body: nil` ends the stream with HEADERS.
    func respond(stream: Int32, status: String? = "200", headers: [(String, String)] = [], body: [UInt8]? = nil,
                 trailers: [(String, String)]? = nil) {
        var fields = headers
        if let status { fields.insert((":status", status), at: 0) }
        if let body { bodies[stream] = ResponseBody(bytes: body, trailers: trailers) }
        let rv = Self.withNV(fields) { nva, count in
            CProxy_nghttp2_submit_response(session, stream, nva, count, body == nil ? nil : { _, id, buf, length, flags, user in
                let server = TestH2Server.from(user)
                guard var body = server.bodies[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
                let n = min(length, body.bytes.count - body.offset)
                body.bytes.withUnsafeBufferPointer {
                    buf!.update(from: $0.baseAddress! + body.offset, count: n)
                }
                body.offset += n
                if body.offset == body.bytes.count {
                    flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                    if let trailers = body.trailers {
                        flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                        _ = TestH2Server.withNV(trailers) { nghttp2_submit_trailer(server.session, id, $0, $1) }
                    }
                }
                server.bodies[id] = body
                return n
            })
        }
        precondition(rv == 0, "submit_response failed: \(rv)")
    }

    /// A HEADERS frame without END_STREAM, e.g. an interim `103`.
    func sendHeaders(stream: Int32, _ fields: [(String, String)]) {
        let rv = Self.withNV(fields) { nghttp2_submit_headers(session, 0, stream, nil, $0, $1, nil) }
        precondition(rv >= 0)
    }

    func reset(stream: Int32, errorCode: UInt32) {
        nghttp2_submit_rst_stream(session, 0, stream, errorCode)
    }

    func goAway(lastStreamID: Int32, errorCode: UInt32 = 0) {
        nghttp2_submit_goaway(session, 0, lastStreamID, errorCode, nil, 0)
    }

    /// The connection-level send window as this server sees it (what the client granted).
    var connectionSendWindow: Int32 { nghttp2_session_get_remote_window_size(session) }

    static func withNV<R>(_ fields: [(String, String)], _ body: (UnsafeMutablePointer<nghttp2_nv>, Int) -> R) -> R {
        var storage: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        for (name, value) in fields {
            let n = storage.count
            storage += Array(name.utf8)
            let v = storage.count
            storage += Array(value.utf8)
            spans.append((n, name.utf8.count, v, value.utf8.count))
        }
        storage.append(0)   // never empty
        return storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            var nva = spans.map {
                nghttp2_nv(name: base + $0.0, value: base + $0.2, namelen: $0.1, valuelen: $0.3, flags: 0)
            }
            precondition(!nva.isEmpty)
            return nva.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}

/// FNV-1a 64, to compare large bodies without keeping them.
struct Checksum: Equatable {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x100_0000_01b3
        }
    }
}

/// Records every delegate event, per stream and in order.
final class RecordingSessionDelegate: HTTP2SessionDelegate {
    var heads: [Int32: (status: Int, headers: HTTPHeaders)] = [:]
    var headCount: [Int32: Int] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var received: [Int32: Int] = [:]
    var ended: Set<Int32> = []
    var closed: [Int32: UInt32] = [:]
    var goAways: [(lastStreamID: Int32, errorCode: UInt32)] = []
    var pingAcks = 0
    var settingsChanges = 0
    /// Per-stream event names in delivery order ("head", "data", "end", "close").
    var log: [Int32: [String]] = [:]
    /// Consume every chunk as soon as it arrives (a fast client).
    var autoConsume = true
    var keepBodies = true
    var onHead: ((HTTP2Session, Int32) -> Void)?
    var onClose: ((HTTP2Session, Int32) -> Void)?

    func session(_ s: HTTP2Session, didReceiveResponseHead status: Int, headers: HTTPHeaders, stream: Int32) {
        heads[stream] = (status, headers)
        headCount[stream, default: 0] += 1
        log[stream, default: []].append("head")
        onHead?(s, stream)
    }

    /// Storage size of every DATA buffer delivered (slices of the fed buffer share its storage).
    var dataStorageCapacities: [Int] = []

    func session(_ s: HTTP2Session, didReceiveData bytes: ByteBuffer, stream: Int32) {
        dataStorageCapacities.append(bytes.storageCapacity)
        if keepBodies { bodies[stream, default: []] += bytes.readableBytesArray }
        received[stream, default: 0] += bytes.readableBytes
        if log[stream]?.last != "data" { log[stream, default: []].append("data") }
        if autoConsume { s.consume(stream: stream, bytes: bytes.readableBytes) }
    }

    func session(_ s: HTTP2Session, streamDidEnd stream: Int32) {
        ended.insert(stream)
        log[stream, default: []].append("end")
    }

    func session(_ s: HTTP2Session, streamDidClose stream: Int32, errorCode: UInt32) {
        closed[stream] = errorCode
        log[stream, default: []].append("close")
        onClose?(s, stream)
    }

    func session(_ s: HTTP2Session, didReceiveGoAway lastStreamID: Int32, errorCode: UInt32) {
        goAways.append((lastStreamID, errorCode))
    }

    func sessionDidReceivePingAck(_ s: HTTP2Session) { pingAcks += 1 }
    func sessionRemoteSettingsChanged(_ s: HTTP2Session) { settingsChanges += 1 }
}

/// Shuttles bytes both ways until neither side has anything to send.
/// - Returns: the number of rounds that moved bytes.
@discardableResult
func pump(_ client: HTTP2Session, _ server: TestH2Server, maxRounds: Int = 100_000) throws -> Int {
    for round in 0..<maxRounds {
        let toServer = client.takeOutput()
        if !toServer.isEmpty { try server.receive(toServer) }
        let toClient = server.send()
        if !toClient.isEmpty { try client.feed(toClient[...]) }
        if toServer.isEmpty && toClient.isEmpty { return round }
    }
    return maxRounds
}
