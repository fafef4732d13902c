import Testing

@testable import StandInServer

/// Unit tests of the stand-in's SPDY/3.1 framer and zlib wrapper (kubectl's SPDY client checks them for real in
/// KubectlUpgradeTests).
@Suite("SPDY framer")
struct SPDYFramerTests {
    @Test func dictionaryHasTheSpecShape() {
        let dictionary = SPDYDictionary.bytes
        #expect(Array(dictionary.prefix(11)) == [0, 0, 0, 7] + Array("options".utf8))
        #expect(Array(dictionary.suffix(6)) == Array("enq=0.".utf8))
        #expect(dictionary.count == 1423)
    }

    @Test func zlibRoundTripsAcrossBlocksOfOneStream() throws {
        let deflater = try ZlibDeflater(dictionary: SPDYDictionary.bytes)
        let inflater = try ZlibInflater(dictionary: SPDYDictionary.bytes)
        let blocks: [[UInt8]] = [
            Array("content-type application/json accept-encoding".utf8),
            [],
            Array(repeating: 0x41, count: 100_000),
            (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) },
        ]
        var compressedTotal = 0
        for block in blocks {
            let compressed = try deflater.compress(block)
            compressedTotal += compressed.count
            #expect(try inflater.decompress(compressed) == block)
        }
        #expect(compressedTotal < 10_000)  // it does compress
        // A stream that was not set up with the dictionary cannot be read with another one.
        let other = try ZlibDeflater(dictionary: Array("different".utf8))
        #expect(throws: ZlibError.self) { try ZlibInflater(dictionary: SPDYDictionary.bytes).decompress(other.compress([1, 2, 3])) }
    }

    @Test func framesRoundTripInAnySplit() throws {
        let frames: [SPDYFrame] = [
            .synStream(
                streamID: 1, associatedTo: 0, priority: 0, fin: false,
                headers: SPDYHeaderBlock([("streamType", "error"), ("port", "8080"), ("requestID", "0")])),
            .synReply(streamID: 1, fin: false, headers: SPDYHeaderBlock()),
            .synStream(
                streamID: 3, associatedTo: 0, priority: 7, fin: true,
                headers: SPDYHeaderBlock([("streamtype", "data"), ("port", "8080"), ("requestid", "0")])),
            .data(streamID: 3, fin: false, payload: Array("hello".utf8)),
            .data(streamID: 3, fin: true, payload: []),
            .rstStream(streamID: 3, status: SPDYFrame.statusCancel),
            .settings([.init(flags: 0, id: 7, value: 65536), .init(flags: 1, id: 4, value: 100)]),
            .ping(id: 1),
            .headers(streamID: 1, fin: true, headers: SPDYHeaderBlock([("x", "a\u{0}b")])),
            .windowUpdate(streamID: 1, delta: 4096),
            .goAway(lastGoodStreamID: 3, status: 0),
        ]
        let encoder = try SPDYFrameEncoder()
        var wire: [UInt8] = []
        for frame in frames { wire += try encoder.encode(frame) }
        // Control frame header: C bit, version 3, type 1 (SYN_STREAM).
        #expect(Array(wire.prefix(4)) == [0x80, 0x03, 0x00, 0x01])

        for split in [1, 7, 64, wire.count] {
            let decoder = try SPDYFrameDecoder()
            var decoded: [SPDYFrame] = []
            var offset = 0
            while offset < wire.count {
                decoder.append(wire[offset..<min(wire.count, offset + split)])
                offset += split
                while let frame = try decoder.next() { decoded.append(frame) }
            }
            #expect(decoded == frames, "split \(split)")
        }
        let block = SPDYHeaderBlock([("streamType", "error")])
        #expect(block["StreamType"] == "error")
        #expect(SPDYHeaderBlock([("x", "a\u{0}b")])["x"] == "a")
    }

    @Test func otherVersionsAreRejected() throws {
        let decoder = try SPDYFrameDecoder()
        decoder.append([0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        #expect(throws: SPDYFramingError.unsupportedVersion(2)) { try decoder.next() }
    }
}
