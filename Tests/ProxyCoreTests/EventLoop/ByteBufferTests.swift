import Glibc
import Testing
@testable import ProxyCore

@Suite("ByteBuffer")
struct ByteBufferTests {
    @Test func writesAndReadsInOrder() {
        var buffer = ByteBuffer()
        #expect(buffer.isEmpty)
        buffer.writeBytes([1, 2, 3])
        buffer.writeBytes("abc".utf8)
        buffer.writeByte(9)
        #expect(buffer.readableBytesArray == [1, 2, 3, 97, 98, 99, 9])
        buffer.moveReaderIndex(forwardBy: 2)
        #expect(buffer.readableBytes == 5)
        #expect(buffer[0] == 3)
        #expect(buffer == ByteBuffer(bytes: [3, 97, 98, 99, 9]))
    }

    @Test func slicesShareStorageAndNeverChangeUnderTheirHolder() {
        var buffer = ByteBuffer(capacity: 1024)
        buffer.writeBytes(Array(0..<100))
        let slice = buffer.slice(at: 10, length: 20)
        #expect(slice.storageCapacity == buffer.storageCapacity)
        #expect(slice.readableBytesArray == Array(10..<30))
        let aloneNow = buffer.holdsStorageAlone()
        #expect(!aloneNow)
        // Writing to the parent while the slice lives copies the parent; the slice keeps its bytes.
        buffer.moveReaderIndex(forwardBy: 100)
        buffer.writeBytes([UInt8](repeating: 0xFF, count: 900))
        #expect(slice.readableBytesArray == Array(10..<30))
        var reader = ByteBuffer(bytes: Array(0..<10))
        let head = reader.readSlice(length: 4)
        #expect(head.readableBytesArray == [0, 1, 2, 3])
        #expect(reader.readableBytesArray == Array(4..<10))
    }

    @Test func writingToASliceCopiesIt() {
        var buffer = ByteBuffer(bytes: Array(0..<50))
        var slice = buffer.slice(at: 0, length: 5)
        slice.writeBytes([200])
        #expect(slice.readableBytesArray == [0, 1, 2, 3, 4, 200])
        #expect(buffer.readableBytesArray == Array(0..<50))
        let aloneNow = buffer.holdsStorageAlone()
        #expect(aloneNow)
    }

    @Test func storageIsReusedWhenHeldAlone() {
        var buffer = ByteBuffer(capacity: 4096)
        buffer.writeBytes([UInt8](repeating: 1, count: 4000))
        buffer.moveReaderIndex(forwardBy: 3990)
        // 10 unread bytes slide to the front instead of a new allocation.
        buffer.writeBytes([UInt8](repeating: 2, count: 3000))
        #expect(buffer.storageCapacity == 4096)
        #expect(buffer.readableBytes == 3010)
        buffer.clear()
        #expect(buffer.isEmpty && buffer.storageCapacity == 4096)
        // Growing beyond the capacity keeps the bytes.
        buffer.writeBytes(Array(repeating: 7, count: 5000))
        #expect(buffer.readableBytesArray == Array(repeating: 7, count: 5000))
        #expect(buffer.storageCapacity >= 5000)
    }

    @Test func writeWithUnsafeMutableBytesMovesTheWriterByTheCountReturned() {
        var buffer = ByteBuffer()
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16) { raw in
            #expect(raw.count >= 16)
            for i in 0..<5 { raw[i] = UInt8(i) }
            return 5
        }
        #expect(n == 5)
        #expect(buffer.readableBytesArray == [0, 1, 2, 3, 4])
    }

    @Test func wastefulSlicesAreCompacted() {
        var big = ByteBuffer(capacity: 65_536)
        big.writeBytes([UInt8](repeating: 3, count: 65_536))
        var small = big.slice(at: 100, length: 8192)
        small.compactIfWasteful()
        #expect(small.storageCapacity == 8192)
        #expect(small.readableBytesArray == [UInt8](repeating: 3, count: 8192))
        var half = big.slice(at: 0, length: 40_000)
        half.compactIfWasteful()   // most of the storage is its own: kept
        #expect(half.storageCapacity == 65_536)
        let aloneNow = big.holdsStorageAlone()
        #expect(aloneNow == false)
    }

    /// The copies that compaction and growth make when the buffer holds the last reference to its old storage
    /// (the storage is freed by that very move). An optimised build once released the old storage before copying
    /// from it; the ASan release run of slow clients caught it, and `moveReadableBytes` now keeps it alive.
    @Test func copiesOutOfStorageHeldLastAreIntact() {
        let pattern = TestIO.pattern(count: 82_944)
        var slices: [ByteBuffer] = []
        do {
            let decrypted = ByteBuffer(bytes: pattern)
            slices = (0..<5).map { decrypted.slice(at: 9 + $0 * 16_393, length: 16_384) }
        }
        for i in slices.indices { slices[i].compactIfWasteful() }   // the last one frees the 81 KiB storage
        for (i, slice) in slices.enumerated() {
            #expect(slice.storageCapacity == 16_384)
            #expect(slice.readableBytesArray == Array(pattern[9 + i * 16_393 ..< 9 + i * 16_393 + 16_384]))
        }
        var grown = ByteBuffer(bytes: pattern).slice(at: 100, length: 1000)
        grown.writeBytes([1, 2, 3])   // a slice never writes into shared storage: moved, then appended
        #expect(grown.readableBytesArray == Array(pattern[100 ..< 1100]) + [1, 2, 3])
    }

    @Test(arguments: [1, 9, 15, 16, 255, 4096, 65_535, 1 << 20, Int(UInt32.max)])
    func chunkHeaderIsLowercaseHex(length: Int) {
        var out = ByteBuffer()
        HTTP1Serializer.writeChunkHeader(length: length, into: &out)
        #expect(out.readableBytesArray == Array((String(length, radix: 16) + "\r\n").utf8))
    }
}

@Suite("WriteQueue")
struct WriteQueueTests {
    @Test func partialGatheredWritesConsumeAcrossBuffersInOrder() {
        let (ours, peer) = TestIO.socketPair()
        defer { close(ours); close(peer) }
        TestIO.setNonBlocking(ours)
        var queue = WriteQueue()
        var expected: [UInt8] = []
        var source = ByteBuffer(bytes: TestIO.pattern(count: 3 << 20))
        // Slices of one storage, tiny and large, as DATA payloads of one decrypted read would be.
        let sizes = [1, 3, 16_384, 7, 100_003, 2, 65_536]
        var k = 0
        while source.readableBytes > 0 {
            let size = min(sizes[k % sizes.count], source.readableBytes)
            let slice = source.readSlice(length: size)
            expected += slice.readableBytesArray
            queue.append(slice)
            k += 1
        }
        #expect(queue.count == 3 << 20)
        var received: [UInt8] = []
        var sawWouldBlock = false
        var sawPartialWrite = false
        while !queue.isEmpty {
            let before = queue.count
            switch try! queue.write(fd: ours) {
            case .processed(let n):
                queue.consume(n)
                if n < before { sawPartialWrite = true }
            case .wouldBlock:
                sawWouldBlock = true
                queue.compactWasteful()
                received += TestIO.read(peer, count: 65_536)
            }
        }
        received += TestIO.read(peer, count: expected.count - received.count)
        #expect(sawWouldBlock)
        #expect(sawPartialWrite)
        #expect(received == expected)
        #expect(queue.bufferCount == 0)
    }

    @Test func compactionGivesBackedUpSlicesTheirOwnStorage() {
        var queue = WriteQueue()
        var big = ByteBuffer(capacity: 65_536)
        big.writeBytes([UInt8](repeating: 1, count: 65_536))
        for i in 0..<8 { queue.append(big.slice(at: i * 8192, length: 8192)) }
        let pinnedBefore = !big.holdsStorageAlone()
        #expect(pinnedBefore)
        queue.compactWasteful()
        let aloneNow = big.holdsStorageAlone()
        #expect(aloneNow)   // no queued slice keeps the 64 KiB alive any more
        #expect(queue.count == 65_536)
        queue.consume(8192 + 100)
        #expect(queue.count == 65_536 - 8292)
        #expect(queue.bufferCount == 7)
    }
}
