/// FIFO of owned byte chunks waiting to be written, with an offset into the first chunk (partial writes).
/// A value type used by one `StreamConnection`; no copies of the chunks are made.
struct WriteQueue {
    private var chunks: [[UInt8]] = []
    private var head = 0                 // index of the first pending chunk in `chunks`
    private(set) var offset = 0          // bytes of chunks[head] already written
    private(set) var count = 0           // total bytes pending

    var isEmpty: Bool { count == 0 }

    mutating func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        chunks.append(bytes)
        count += bytes.count
    }

    /// The unwritten part of the first chunk; call only when not empty.
    func withFirstUnwritten<R>(_ body: (UnsafeRawBufferPointer) throws(IOError) -> R) throws(IOError) -> R {
        let chunk = chunks[head]
        let offset = self.offset
        // Array.withUnsafeBytes is untyped `rethrows`; carry the typed error through a Result.
        return try chunk.withUnsafeBytes { raw in
            Result { () throws(IOError) -> R in try body(UnsafeRawBufferPointer(rebasing: raw[offset...])) }
        }.get()
    }

    /// Marks `n` bytes (at most the first chunk's unwritten remainder) as written.
    mutating func consume(_ n: Int) {
        precondition(n >= 0 && n <= chunks[head].count - offset, "WriteQueue.consume beyond the first chunk")
        count -= n
        offset += n
        if offset == chunks[head].count {
            chunks[head] = []
            head += 1
            offset = 0
            if head == chunks.count {
                chunks.removeAll(keepingCapacity: chunks.capacity <= 64)
                head = 0
            } else if head >= 32 && head * 2 >= chunks.count {
                chunks.removeFirst(head)
                head = 0
            }
        }
    }

    mutating func removeAll() {
        chunks = []
        head = 0
        offset = 0
        count = 0
    }
}
