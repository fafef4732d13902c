import CNghttp2

/// An nghttp2 failure: the library error code, the call (or session step) that produced it, and
/// `nghttp2_strerror`'s text for the code, captured when the error is created.
public struct HTTP2Error: Error, CustomStringConvertible, Equatable, Sendable {
    /// An `NGHTTP2_ERR_*` code (negative).
    public let code: Int32
    /// The nghttp2 function or session step that failed, e.g. `"nghttp2_session_mem_recv"`.
    public let function: String
    /// `nghttp2_strerror(code)`.
    public let text: String
    /// What we know beyond the code, e.g. the HTTP/2 error code of the GOAWAY nghttp2 sent, or its error message.
    public let detail: String?

    init(code: Int32, function: String, detail: String? = nil) {
        self.code = code
        self.function = function
        self.text = String(cString: nghttp2_strerror(code))
        self.detail = detail
    }

    public var description: String {
        var s = "\(function): \(text) (\(code))"
        if let detail { s += ": \(detail)" }
        return s
    }
}

extension HTTP2Error {
    /// `NGHTTP2_ERR_*` raw values used by the session (C enums import as structs).
    static let protocolErrorCode = NGHTTP2_ERR_PROTO.rawValue
    static let invalidArgumentCode = NGHTTP2_ERR_INVALID_ARGUMENT.rawValue
    static let invalidHeaderBlockCode = NGHTTP2_ERR_INVALID_HEADER_BLOCK.rawValue
    static let startStreamNotAllowedCode = NGHTTP2_ERR_START_STREAM_NOT_ALLOWED.rawValue
    static let callbackFailureCode = NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
}

/// HTTP/2 error codes (RFC 9113 §7) as they appear in RST_STREAM and GOAWAY.
public enum HTTP2ErrorCode {
    public static let noError: UInt32 = 0x0
    public static let protocolError: UInt32 = 0x1
    public static let internalError: UInt32 = 0x2
    public static let flowControlError: UInt32 = 0x3
    public static let settingsTimeout: UInt32 = 0x4
    public static let streamClosed: UInt32 = 0x5
    public static let frameSizeError: UInt32 = 0x6
    public static let refusedStream: UInt32 = 0x7
    public static let cancel: UInt32 = 0x8
    public static let compressionError: UInt32 = 0x9
    public static let connectError: UInt32 = 0xa
    public static let enhanceYourCalm: UInt32 = 0xb
    public static let inadequateSecurity: UInt32 = 0xc
    public static let http11Required: UInt32 = 0xd

    /// The RFC name, e.g. `"PROTOCOL_ERROR"`, for logs.
    public static func name(_ code: UInt32) -> String {
        let names = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                     "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                     "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
        return code < names.count ? names[Int(code)] : "0x" + String(code, radix: 16)
    }
}
