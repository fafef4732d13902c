internal import CNghttp2

/// Facts about the nghttp2 library proxyd runs with.
enum HTTP2Library {
    /// The version of the library loaded at run time (`1.52.0`).
    static var version: String {
        guard let info = nghttp2_version(0) else { return "unknown" }
        return String(cString: info.pointee.version_str)
    }
}
