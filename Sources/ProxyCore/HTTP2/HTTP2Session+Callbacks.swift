import CNghttp2

// nghttp2 callbacks. Each C-compatible function below recovers the session from `user_data` (an unretained
// pointer, see HTTP2Session) and forwards to a fileprivate method. Those methods only update the stream table and
// record events in `pendingEvents`; they never call mem_recv/mem_send, never delete the session and never call the
// delegate. No Swift error crosses into C: a failure is kept in `pendingError` and NGHTTP2_ERR_CALLBACK_FAILURE is
// returned (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE to reset only the stream concerned).

extension HTTP2Session {
    static func installCallbacks(_ callbacks: OpaquePointer) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSend)
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, onInvalidFrameRecv)
        nghttp2_session_callbacks_set_error_callback2(callbacks, onError)
    }

    /// The request-body read callback handed to `CProxy_nghttp2_submit_request`.
    static var bodyReadCallback: CProxy_nghttp2_body_read_callback { readRequestBody }
}

private enum FrameType {
    static let data = UInt8(NGHTTP2_DATA.rawValue)
    static let headers = UInt8(NGHTTP2_HEADERS.rawValue)
    static let rstStream = UInt8(NGHTTP2_RST_STREAM.rawValue)
    static let settings = UInt8(NGHTTP2_SETTINGS.rawValue)
    static let ping = UInt8(NGHTTP2_PING.rawValue)
    static let goAway = UInt8(NGHTTP2_GOAWAY.rawValue)
}

private let flagEndStream = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
private let flagAck = UInt8(NGHTTP2_FLAG_ACK.rawValue)
private let callbackFailure = NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
private let temporalCallbackFailure = NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue

private func owner(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session? {
    guard let userData else { return nil }
    return Unmanaged<HTTP2Session>.fromOpaque(userData).takeUnretainedValue()
}

/// nghttp2 handed us a null pointer it promises never to pass: record it, fail the session.
private func missingArgument(_ session: HTTP2Session?, _ callback: String) -> Int32 {
    if let session, session.pendingError == nil {
        session.pendingError = HTTP2Error(code: callbackFailure, function: callback,
                                          detail: "nghttp2 passed a null argument")
    }
    return callbackFailure
}

private func onBeginHeaders(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                            _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData), let frame else { return missingArgument(owner(userData), "on_begin_headers") }
    return s.beginHeaders(frame.pointee.hd)
}

private func onHeader(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                      _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
                      _ value: UnsafePointer<UInt8>?, _ valueLength: Int,
                      _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData), let frame else { return missingArgument(owner(userData), "on_header") }
    return s.header(frame.pointee.hd,
                    name: UnsafeBufferPointer(start: name, count: name == nil ? 0 : nameLength),
                    value: UnsafeBufferPointer(start: value, count: value == nil ? 0 : valueLength))
}

private func onFrameRecv(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData), let frame else { return missingArgument(owner(userData), "on_frame_recv") }
    return s.frameReceived(frame)
}

private func onDataChunkRecv(_ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32,
                             _ data: UnsafePointer<UInt8>?, _ length: Int,
                             _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData) else { return missingArgument(nil, "on_data_chunk_recv") }
    return s.dataChunkReceived(stream: streamID,
                               UnsafeBufferPointer(start: data, count: data == nil ? 0 : length))
}

private func onStreamClose(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32,
                           _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData) else { return missingArgument(nil, "on_stream_close") }
    return s.streamClosed(streamID, errorCode: errorCode)
}

private func onFrameSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData), let frame else { return missingArgument(owner(userData), "on_frame_send") }
    return s.frameSent(frame)
}

private func onInvalidFrameRecv(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                                _ libErrorCode: Int32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData) else { return missingArgument(nil, "on_invalid_frame_recv") }
    let type = frame.map { Int($0.pointee.hd.type) } ?? -1
    let stream = frame.map { Int($0.pointee.hd.stream_id) } ?? -1
    s.lastLibraryError = (libErrorCode, "invalid frame (type \(type)) on stream \(stream)")
    return 0
}

private func onError(_ session: OpaquePointer?, _ libErrorCode: Int32, _ message: UnsafePointer<CChar>?,
                     _ length: Int, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let s = owner(userData) else { return missingArgument(nil, "error_callback") }
    let text = message.map {
        String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self)
    } ?? ""
    s.lastLibraryError = (libErrorCode, text)
    return 0
}

private func readRequestBody(_ session: OpaquePointer?, _ streamID: Int32, _ buffer: UnsafeMutablePointer<UInt8>?,
                             _ length: Int, _ dataFlags: UnsafeMutablePointer<UInt32>?,
                             _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let s = owner(userData), let buffer, let dataFlags else {
        return Int(missingArgument(owner(userData), "data_source_read_callback"))
    }
    return s.readBody(stream: streamID, into: UnsafeMutableRawBufferPointer(start: buffer, count: length),
                      flags: dataFlags)
}

extension HTTP2Session {
    fileprivate func beginHeaders(_ hd: nghttp2_frame_hd) -> Int32 {
        if hd.type == FrameType.headers {
            streams.update(hd.stream_id) { $0.resetHeaderBlock() }
        }
        return 0
    }

    fileprivate func header(_ hd: nghttp2_frame_hd, name: UnsafeBufferPointer<UInt8>,
                            value: UnsafeBufferPointer<UInt8>) -> Int32 {
        // In place: a copy of the stream held across the mutation would copy its header list on every field.
        guard hd.type == FrameType.headers,
              let accepted = streams.update(hd.stream_id, {
                  $0.receiveHeaderField(name: name, value: value, maxBytes: Self.maxResponseHeaderBytes)
              }) else { return 0 }
        // nghttp2 answers TEMPORAL_CALLBACK_FAILURE with RST_STREAM(INTERNAL_ERROR); the close follows.
        return accepted ? 0 : temporalCallbackFailure
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let hd = frame.pointee.hd
        let id = hd.stream_id
        switch hd.type {
        case FrameType.data:
            if hd.flags & flagEndStream != 0, let state = streams[id], !state.resetByUs, !state.closeRecorded {
                pendingEvents.append(.end(stream: id))
            }
        case FrameType.headers:
            guard let state = streams[id], !state.resetByUs, !state.closeRecorded else { return 0 }
            let endStream = hd.flags & flagEndStream != 0
            if state.headRecorded {
                // Trailers: dropped (the client side speaks HTTP/1.1 without trailers). Only END_STREAM matters.
                if endStream { pendingEvents.append(.end(stream: id)) }
            } else if let status = state.status, state.statusIsValid, status >= 200 {
                pendingEvents.append(.head(stream: id, status: status, headers: state.headers))
                // The event has them; later header blocks (trailers) are ignored: nothing to keep for a long stream.
                streams.update(id) {
                    $0.headRecorded = true
                    $0.headers = HTTPHeaders()
                }
                if endStream { pendingEvents.append(.end(stream: id)) }
            } else if let status = state.status, state.statusIsValid, status >= 100, !endStream {
                // Interim 1xx head: ignored; the final head follows in a later HEADERS frame.
            } else {
                // No usable :status: malformed response (RFC 9113 §8.1.1). Reset once nghttp2 has returned.
                streams.update(id) { $0.markReset() }
                pendingEvents.append(.reset(stream: id, errorCode: HTTP2ErrorCode.protocolError))
            }
            streams.update(id) { $0.resetHeaderBlock() }
        case FrameType.settings:
            if hd.flags & flagAck == 0 {
                remoteSettingsReceived = true
                pendingEvents.append(.remoteSettings)
            }
        case FrameType.ping:
            if hd.flags & flagAck != 0 { pendingEvents.append(.pingAck) }
        case FrameType.goAway:
            let goAway = frame.pointee.goaway
            goAwayReceived = true
            lastGoAwayStreamID = goAway.last_stream_id
            pendingEvents.append(.goAway(lastStreamID: goAway.last_stream_id, errorCode: goAway.error_code))
        default:
            break   // RST_STREAM arrives as a stream close; WINDOW_UPDATE and PRIORITY need nothing.
        }
        return 0
    }

    fileprivate func dataChunkReceived(stream id: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard !bytes.isEmpty else { return 0 }
        guard let state = streams[id] else {
            pendingEvents.append(.releaseConnectionWindow(bytes.count))
            return 0
        }
        streams.update(id) { $0.unconsumed += bytes.count }
        if !state.resetByUs, !state.closeRecorded {
            pendingEvents.append(.data(stream: id, bytes: payload(bytes)))
        }
        return 0
    }

    /// A DATA payload as a buffer: a slice of the input being parsed when nghttp2 points into it (the usual case),
    /// else a copy (nghttp2's own memory is transient).
    private func payload(_ bytes: UnsafeBufferPointer<UInt8>) -> ByteBuffer {
        let offset = Int(bitPattern: bytes.baseAddress) &- inputAddress
        if inputAddress != 0, offset >= 0, offset + bytes.count <= input.readableBytes {
            return input.slice(at: offset, length: bytes.count)
        }
        return ByteBuffer(bytes: bytes)
    }

    fileprivate func streamClosed(_ id: Int32, errorCode: UInt32) -> Int32 {
        guard streams.update(id, { $0.recordClose() }) == true else { return 0 }
        pendingEvents.append(.close(stream: id, errorCode: errorCode))
        return 0
    }

    fileprivate func frameSent(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        switch frame.pointee.hd.type {
        case FrameType.data:
            sentDataFrame = true
        case FrameType.headers:
            // Requests' HEADERS leave in stream-id order (nghttp2 queues them first in, first out), so one number
            // tells which requests went out.
            lastSentRequestStreamID = max(lastSentRequestStreamID, frame.pointee.hd.stream_id)
        case FrameType.goAway:
            // We only ever submit GOAWAY(NO_ERROR); one with an error code is nghttp2 terminating the session
            // because the upstream violated the protocol.
            let code = frame.pointee.goaway.error_code
            if code != HTTP2ErrorCode.noError, libraryGoAwayErrorCode == nil { libraryGoAwayErrorCode = code }
        default:
            break
        }
        return 0
    }

    fileprivate func readBody(stream id: Int32, into buffer: UnsafeMutableRawBufferPointer,
                              flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let state = streams[id], state.body != nil, !state.resetByUs, !state.closeRecorded else {
            return Int(temporalCallbackFailure)   // no body to read: nghttp2 resets the stream
        }
        let body = state.body!
        let copied = body.read(into: buffer)
        if body.bufferedBytes == 0, body.isEnded {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return copied
        }
        return copied > 0 ? copied : Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
}
