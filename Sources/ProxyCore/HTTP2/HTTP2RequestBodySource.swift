/// The queue of request-body bytes of one stream, waiting for nghttp2 to pull them into DATA frames.
///
/// Chunks are kept as handed in (no coalescing copy); `read(into:)` copies across chunk boundaries. A class, so a
/// stream without a request body (most of them) carries only an empty reference in its `HTTP2Stream`.
final class HTTP2RequestBodySource {
    private var chunks: [[UInt8]] = []
    private var head = 0            // index of the first chunk not fully read
    private var offset = 0          // bytes already read from chunks[head]
    /// Bytes queued and not yet copied out to nghttp2.
    private(set) var bufferedBytes = 0
    /// `endBody` was called: after the queue drains, the stream ends.
    private(set) var isEnded = false

    func append(_ bytes: [UInt8]) {
        guard !isEnded, !bytes.isEmpty else { return }
        chunks.append(bytes)
        bufferedBytes += bytes.count
    }

    func end() { isEnded = true }

    /// Copies up to `buffer.count` bytes into `buffer`; returns how many were copied.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        while copied < buffer.count, head < chunks.count {
            let chunk = chunks[head]
            let n = min(chunk.count - offset, buffer.count - copied)
            chunk.withUnsafeBytes { src in
                let from = UnsafeRawBufferPointer(rebasing: src[offset..<(offset + n)])
                UnsafeMutableRawBufferPointer(rebasing: buffer[copied..<(copied + n)]).copyMemory(from: from)
            }
            copied += n
            offset += n
            if offset == chunk.count {
                chunks[head] = []   // release the memory now
                head += 1
                offset = 0
            }
        }
        bufferedBytes -= copied
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64, head * 2 >= chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        return copied
    }

    /// Drops everything queued (stream reset or closed).
    func discard() {
        chunks = []
        head = 0
        offset = 0
        bufferedBytes = 0
        isEnded = true
    }
}
