/// A byte buffer with a reader and a writer index over reference-counted storage (the idea of NIO's `ByteBuffer`).
///
/// Bytes move through proxyd in these, from socket to socket: a read lands in one, TLS decrypts into one, an HTTP/2
/// DATA payload is a slice of the decrypted buffer, and the client's write queue sends the slices with `writev`.
/// Slices share the storage of the buffer they were cut from, so handing a body chunk on costs no copy.
///
/// Layout: `storage[reader..<writer]` are the readable bytes; `storage[writer..<limit]` may be written, but only
/// while this value holds the storage alone. Any write to shared storage first moves the readable bytes into fresh
/// storage of their own (copy on write), so a slice never changes under its holder.
///
/// Value semantics; `@unchecked Sendable` because shared storage is never written (the check above), like NIO's.
public struct ByteBuffer: @unchecked Sendable {
    /// Raw bytes, allocated uninitialised and freed in `deinit`. Written only by a `ByteBuffer` that holds the only
    /// reference, and only beyond every slice's readable range.
    final class Storage {
        let bytes: UnsafeMutableRawPointer
        let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
            bytes = .allocate(byteCount: Swift.max(capacity, 1), alignment: 16)
        }

        deinit { bytes.deallocate() }

        nonisolated(unsafe) static let empty = Storage(capacity: 0)
    }

    private var storage: Storage
    private var reader: Int
    private var writer: Int
    /// End of the region this value may write into: the storage's capacity, or a slice's end.
    private var limit: Int

    /// An empty buffer; `capacity` bytes are allocated up front (none for 0).
    public init(capacity: Int = 0) {
        storage = capacity > 0 ? Storage(capacity: capacity) : .empty
        reader = 0
        writer = 0
        limit = storage.capacity
    }

    /// A buffer holding a copy of `bytes`.
    public init(bytes: some Collection<UInt8>) {
        self.init(capacity: bytes.count)
        writeBytes(bytes)
    }

    private init(storage: Storage, reader: Int, writer: Int, limit: Int) {
        self.storage = storage
        self.reader = reader
        self.writer = writer
        self.limit = limit
    }

    // MARK: sizes

    /// Bytes that can be read.
    public var readableBytes: Int { writer - reader }

    public var isEmpty: Bool { writer == reader }

    /// Bytes of the underlying storage, shared with any slices (what this buffer keeps in memory).
    public var storageCapacity: Int { storage.capacity }

    /// Whether this value is the only holder of its storage (no slice of it is alive elsewhere).
    public mutating func holdsStorageAlone() -> Bool { isKnownUniquelyReferenced(&storage) }

    // MARK: writing

    /// Makes room for `count` more bytes at the writer index: in place when this value holds the storage alone and
    /// it has room (moving the readable bytes to the front if that makes room), otherwise in new storage.
    public mutating func reserveWritableBytes(_ count: Int) {
        precondition(count >= 0, "ByteBuffer.reserveWritableBytes: negative count")
        let unique = isKnownUniquelyReferenced(&storage)
        if unique && limit - writer >= count { return }
        let readable = readableBytes
        if unique && limit == storage.capacity && reader > 0 && storage.capacity - readable >= count
            && readable <= storage.capacity / 2
        {
            // Cheaper to slide the (few) unread bytes to the front than to allocate.
            if readable > 0 { storage.bytes.copyMemory(from: storage.bytes + reader, byteCount: readable) }
            reader = 0
            writer = readable
            return
        }
        var capacity = Swift.max(readable + count, 64)
        if readable > 0 || unique {
            // Growing a buffer that is being written to: leave room for more (amortised doubling).
            capacity = Swift.max(capacity, Swift.min(storage.capacity * 2, readable + count + (1 << 20)))
        }
        moveReadableBytes(to: Storage(capacity: capacity))
    }

    /// Copies the readable bytes to the start of `new` and makes it this buffer's storage.
    ///
    /// The old storage is kept alive until the copy is done. Swift may release an object right after the last use
    /// of the reference itself (here: loading `bytes`), and `Storage.deinit` frees the memory being copied from;
    /// an optimised build did move that release in front of the copy when this buffer held the last reference (a
    /// slow client's queued slice being compacted read freed memory).
    private mutating func moveReadableBytes(to new: Storage) {
        let start = reader
        let readable = readableBytes
        withExtendedLifetime(storage) { old in
            if readable > 0 { new.bytes.copyMemory(from: old.bytes + start, byteCount: readable) }
        }
        storage = new
        reader = 0
        writer = readable
        limit = new.capacity
    }

    /// Appends a copy of `bytes`.
    public mutating func writeBytes(_ bytes: some Collection<UInt8>) {
        let count = bytes.count
        guard count > 0 else { return }
        reserveWritableBytes(count)
        let target = storage.bytes + writer
        let copied: Void? = bytes.withContiguousStorageIfAvailable { source in
            target.copyMemory(from: source.baseAddress!, byteCount: count)
        }
        if copied == nil {
            var offset = 0
            for byte in bytes {
                target.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
                offset += 1
            }
        }
        writer += count
    }

    /// Appends one byte.
    public mutating func writeByte(_ byte: UInt8) {
        reserveWritableBytes(1)
        storage.bytes.storeBytes(of: byte, toByteOffset: writer, as: UInt8.self)
        writer += 1
    }

    /// Appends a copy of `other`'s readable bytes.
    public mutating func writeBuffer(_ other: ByteBuffer) {
        other.withUnsafeReadableBytes { writeBytes($0) }
    }

    /// Appends a copy of raw bytes (the caller's pointer is only used during the call).
    public mutating func writeBytes(_ raw: UnsafeRawBufferPointer) {
        guard raw.count > 0 else { return }
        reserveWritableBytes(raw.count)
        (storage.bytes + writer).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        writer += raw.count
    }

    /// Lends `body` the writable space (at least `minimumWritableBytes`) and moves the writer index by the count it
    /// returns (0 ... space). The pointer must not escape `body`.
    @discardableResult
    public mutating func writeWithUnsafeMutableBytes<E: Error>(
        minimumWritableBytes: Int, _ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int
    ) throws(E) -> Int {
        reserveWritableBytes(minimumWritableBytes)
        let space = UnsafeMutableRawBufferPointer(start: storage.bytes + writer, count: limit - writer)
        let written = try body(space)
        precondition(written >= 0 && written <= space.count, "ByteBuffer: more bytes written than there was room for")
        writer += written
        return written
    }

    // MARK: reading

    /// Lends `body` the readable bytes. The pointer must not escape `body`.
    public func withUnsafeReadableBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let storage = self.storage
        defer { withExtendedLifetime(storage) {} }
        return try body(UnsafeRawBufferPointer(start: storage.bytes + reader, count: writer - reader))
    }

    /// Marks `count` readable bytes as read.
    public mutating func moveReaderIndex(forwardBy count: Int) {
        precondition(count >= 0 && count <= readableBytes, "ByteBuffer.moveReaderIndex beyond the readable bytes")
        reader += count
    }

    /// `length` readable bytes from `offset` (relative to the reader index), sharing this buffer's storage.
    public func slice(at offset: Int, length: Int) -> ByteBuffer {
        precondition(offset >= 0 && length >= 0 && offset + length <= readableBytes, "ByteBuffer.slice out of range")
        let start = reader + offset
        return ByteBuffer(storage: storage, reader: start, writer: start + length, limit: start + length)
    }

    /// The first `length` readable bytes as a slice (shared storage); the reader index moves past them.
    public mutating func readSlice(length: Int) -> ByteBuffer {
        let result = slice(at: 0, length: length)
        reader += length
        return result
    }

    /// The byte at `offset` from the reader index.
    public subscript(offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset < readableBytes, "ByteBuffer subscript out of range")
        return storage.bytes.load(fromByteOffset: reader + offset, as: UInt8.self)
    }

    /// The offset (from the reader index) of the first readable byte equal to `byte`.
    public func firstIndex(of byte: UInt8) -> Int? {
        withUnsafeReadableBytes { $0.firstIndex(of: byte) }
    }

    /// A copy of the readable bytes as an array.
    public var readableBytesArray: [UInt8] {
        withUnsafeReadableBytes { Array($0) }
    }

    /// Forgets all bytes. Keeps the storage for reuse when this value holds it alone.
    public mutating func clear() {
        if isKnownUniquelyReferenced(&storage) && limit == storage.capacity {
            reader = 0
            writer = 0
        } else {
            self = ByteBuffer()
        }
    }

    /// Moves the readable bytes into storage of exactly their size when the storage they live in is much larger
    /// (a small slice of a large read would otherwise keep all of it in memory while it waits in a queue).
    public mutating func compactIfWasteful() {
        let readable = readableBytes
        guard storage.capacity > 2 * readable + 4096 else { return }
        moveReadableBytes(to: Storage(capacity: readable))
    }
}

extension ByteBuffer: Equatable {
    /// Equal readable bytes (storage and indices do not matter).
    public static func == (lhs: ByteBuffer, rhs: ByteBuffer) -> Bool {
        guard lhs.readableBytes == rhs.readableBytes else { return false }
        return lhs.withUnsafeReadableBytes { a in rhs.withUnsafeReadableBytes { b in a.elementsEqual(b) } }
    }
}

extension ByteBuffer: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: UInt8...) {
        self.init(bytes: elements)
    }
}

extension ByteBuffer: CustomStringConvertible {
    public var description: String { "ByteBuffer(readable: \(readableBytes), storage: \(storageCapacity))" }
}
