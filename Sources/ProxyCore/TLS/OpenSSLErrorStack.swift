internal import COpenSSL

/// The OpenSSL thread-local error queue, drained into strings at the point a call failed.
///
/// OpenSSL reports *why* through this queue, not through return codes; a `TLSError` carries the drained queue so
/// the log line names the real cause ("error:0A000086:SSL routines::certificate verify failed").
public struct OpenSSLErrorStack: Sendable, Hashable, CustomStringConvertible {
    /// One line per queued error, oldest first: `ERR_error_string_n` text plus any attached data.
    public let messages: [String]
    /// The library reason string of each entry ("certificate verify failed"), oldest first; same count as `messages`.
    public let reasons: [String]

    public init(messages: [String] = [], reasons: [String] = []) {
        self.messages = messages
        self.reasons = reasons
    }

    public var isEmpty: Bool { messages.isEmpty }

    public var description: String { messages.joined(separator: "; ") }

    /// Empties the calling thread's OpenSSL error queue into a value. Call right after the failing OpenSSL call,
    /// on the same thread (the queue is thread-local).
    static func drain() -> OpenSSLErrorStack {
        var messages: [String] = []
        var reasons: [String] = []
        while true {
            var data: UnsafePointer<CChar>? = nil
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            var text = errorString(code)
            if flags & ERR_TXT_STRING != 0, let data, data.pointee != 0 {
                text += " (\(String(cString: data)))"
            }
            messages.append(text)
            if let reason = ERR_reason_error_string(code) {
                reasons.append(String(cString: reason))
            } else {
                reasons.append("reason(\(ERR_GET_REASON(code)))")
            }
        }
        return OpenSSLErrorStack(messages: messages, reasons: reasons)
    }

    private static func errorString(_ code: UInt) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        return buffer.withUnsafeMutableBufferPointer { buf in
            ERR_error_string_n(code, buf.baseAddress, buf.count)
            return String(cString: buf.baseAddress!)
        }
    }
}
