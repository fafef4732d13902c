import NIOCore

/// Generates a valid ConfigMapList JSON document of (almost always exactly) `totalBytes` bytes, piece by piece,
/// so that huge lists never exist in memory at once. Items are ~4 KiB ConfigMaps in namespace `big`; the blob sizes
/// are chosen so the document length comes out exact. A request smaller than the empty list gets the empty list.
struct LargeListGenerator {
    let totalBytes: Int
    private let header: [UInt8]
    private let footer: [UInt8] = Array("]}".utf8)
    private let count: Int
    private let blobLength: Int
    private let lastBlobLength: Int
    private var nextItem = 0
    private var headerSent = false
    private var footerSent = false

    private static let itemSuffix = Array("\"}}".utf8)
    private static let blobPattern: [UInt8] = Array((0..<65536).map { UInt8(ascii: "a") + UInt8($0 % 26) })
    private static let targetBlob = 4096

    private static func itemPrefix(_ index: Int) -> [UInt8] {
        let digits = String(index)
        let name = "big-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        return Array(
            (#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":""# + name
                + #"","namespace":"big","resourceVersion":"1"},"data":{"blob":""#).utf8
        )
    }

    init(totalBytes: Int, resourceVersion: Int) {
        self.totalBytes = totalBytes
        self.header = Array(
            (#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":""# + String(resourceVersion)
                + #""},"items":["#).utf8
        )
        let base = Self.itemPrefix(0).count + Self.itemSuffix.count
        let available = totalBytes - header.count - footer.count
        if available < base {
            count = 0
            blobLength = 0
            lastBlobLength = 0
        } else {
            let count = max(1, min(99_999_999, (available + 1) / (Self.targetBlob + base + 1)))
            let blobTotal = available - (count - 1) - count * base
            self.count = count
            self.blobLength = blobTotal / count
            self.lastBlobLength = blobTotal / count + blobTotal % count
        }
    }

    /// The next piece of the document (about `chunkSize` bytes, whole items), or nil when it is complete.
    mutating func next(chunkSize: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        if footerSent { return nil }
        var buffer = allocator.buffer(capacity: chunkSize + Self.targetBlob * 2 + 256)
        if !headerSent {
            buffer.writeBytes(header)
            headerSent = true
        }
        while buffer.readableBytes < chunkSize, nextItem < count {
            if nextItem > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
            buffer.writeBytes(Self.itemPrefix(nextItem))
            var remaining = nextItem == count - 1 ? lastBlobLength : blobLength
            while remaining > 0 {
                let n = min(remaining, Self.blobPattern.count)
                buffer.writeBytes(Self.blobPattern[0..<n])
                remaining -= n
            }
            buffer.writeBytes(Self.itemSuffix)
            nextItem += 1
        }
        if nextItem == count {
            buffer.writeBytes(footer)
            footerSent = true
        }
        return buffer
    }
}
