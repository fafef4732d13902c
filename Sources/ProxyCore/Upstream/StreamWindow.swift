/// The receive window proxyd advertises for one upstream HTTP/2 stream, sized for memory.
///
/// A stream starts with `initial` bytes: what a client that stops reading can make proxyd hold for it (the DATA
/// the apiserver may send before proxyd hands the window back). A client that takes `growthBytes` without its
/// socket ever backing up, and whose kernel queue is (nearly) empty, gets the window doubled, up to `maximum`, so
/// a large list to a fast client is not held back by round trips; a client whose socket backs up gets `initial`
/// again. A value type, kept per stream by `HTTP2UpstreamConnection`.
struct StreamWindow: Equatable {
    /// SETTINGS_INITIAL_WINDOW_SIZE: 64 KiB (RFC 9113's default is 65,535), per stream.
    static let initial: Int32 = 64 * 1024
    static let maximum: Int32 = 2 << 20
    /// Bytes a client must take without backing up before the window doubles: a fast client reaches 1 MiB after
    /// its first MiB (fewer WINDOW_UPDATEs and smaller bursts on a large list). A slow one does not: by then the
    /// kernel holds far more than `clientKeepingUp` allows of what it has not read.
    static let growthBytes = 256 << 10

    private(set) var size = StreamWindow.initial
    /// Bytes the client took since the window last changed (or since it last backed up).
    private var fastBytes = 0

    /// `bytes` reached the client socket.
    /// - Parameters:
    ///   - clientBackedUp: the client socket had said `EAGAIN` before these bytes went out.
    ///   - clientKeepingUp: asked only when the window would grow: whether the kernel holds little unsent for the
    ///     client (a slow client's first MiBs go into kernel buffers as readily as a fast one's).
    /// - Returns: the new window size when it changed, else nil.
    mutating func consumed(_ bytes: Int, clientBackedUp: Bool, clientKeepingUp: () -> Bool) -> Int32? {
        if clientBackedUp {
            fastBytes = 0
            guard size > Self.initial else { return nil }
            size = Self.initial
            return size
        }
        fastBytes += bytes
        guard fastBytes >= Self.growthBytes, size < Self.maximum else { return nil }
        fastBytes = 0
        guard clientKeepingUp() else { return nil }
        size = Swift.min(size * 2, Self.maximum)
        return size
    }
}
