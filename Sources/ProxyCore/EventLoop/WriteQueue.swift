import Glibc

/// FIFO of byte buffers waiting to be written, sent with one `sendmsg` of several iovecs (a response head, chunk
/// framing and body slices go out in one system call without being copied together). A value type used by one
/// `StreamConnection`; the buffers are held as handed in, slices included.
struct WriteQueue {
    /// At most this many iovecs per `sendmsg` (Linux allows 1024; 64 covers several MiB of slices).
    static let maxIOVecs = 64

    private var buffers: [ByteBuffer] = []
    private var head = 0                 // index of the first pending buffer
    /// Buffers before this index were checked by `compactWasteful()`.
    private var checkedForWaste = 0
    private(set) var count = 0           // total bytes pending

    var isEmpty: Bool { count == 0 }

    /// Number of buffers pending (for tests).
    var bufferCount: Int { buffers.count - head }

    mutating func append(_ buffer: ByteBuffer) {
        guard !buffer.isEmpty else { return }
        buffers.append(buffer)
        count += buffer.readableBytes
    }

    /// Writes the pending bytes with `send` (one buffer) or `sendmsg` (several, up to `maxIOVecs`).
    /// - Returns: what the call returned; follow with `consume(n)`.
    func write(fd: Int32) throws(IOError) -> IOResult<Int> {
        let n = min(buffers.count - head, Self.maxIOVecs)
        if n == 1 {
            return try buffers[head].withUnsafeReadableBytes { raw throws(IOError) in try Posix.send(fd: fd, from: raw) }
        }
        return try withUnsafeTemporaryAllocation(of: iovec.self, capacity: n) { iovecs throws(IOError) in
            for i in 0..<n {
                // The queue holds each buffer (and so its storage) for the whole call: the addresses stay valid
                // after the closures return, as NIO's pending-writes manager relies on too.
                buffers[head + i].withUnsafeReadableBytes { raw in
                    iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress), iov_len: raw.count)
                }
            }
            return try Posix.sendmsg(fd: fd, iovecs: UnsafeBufferPointer(iovecs))
        }
    }

    /// Marks `n` bytes as written, across buffers.
    mutating func consume(_ n: Int) {
        precondition(n >= 0 && n <= count, "WriteQueue.consume beyond the queued bytes")
        count -= n
        var left = n
        while left > 0 {
            let first = buffers[head].readableBytes
            if left < first {
                buffers[head].moveReaderIndex(forwardBy: left)
                break
            }
            left -= first
            buffers[head] = ByteBuffer()   // release the storage now
            head += 1
        }
        if head == buffers.count {
            buffers.removeAll(keepingCapacity: buffers.capacity <= 64)
            head = 0
            checkedForWaste = 0
        } else if head >= 32 && head * 2 >= buffers.count {
            buffers.removeFirst(head)
            checkedForWaste = max(0, checkedForWaste - head)
            head = 0
        }
    }

    /// The socket is backed up: buffers that are small slices of large storage (a DATA payload cut from a 64 KiB
    /// decrypted read) get storage of their own, so a slow client holds only the bytes it has yet to receive.
    /// Each buffer is checked once.
    mutating func compactWasteful() {
        var i = max(head, checkedForWaste)
        while i < buffers.count {
            buffers[i].compactIfWasteful()
            i += 1
        }
        checkedForWaste = buffers.count
    }

    mutating func removeAll() {
        buffers = []
        head = 0
        checkedForWaste = 0
        count = 0
    }
}
