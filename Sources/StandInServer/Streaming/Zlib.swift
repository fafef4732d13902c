import CZlib

struct ZlibError: Error, CustomStringConvertible {
    var code: Int32
    var operation: String
    var description: String { "zlib \(operation) failed (\(code))" }
}

/// The sending half of a zlib stream with a preset dictionary, sync-flushed after every block: how SPDY/3
/// compresses header blocks (one stream per direction for the whole connection). The `z_stream` lives at a fixed
/// heap address, because zlib keeps a pointer back to it.
final class ZlibDeflater {
    private let stream: UnsafeMutablePointer<z_stream>

    init(dictionary: [UInt8], level: Int32 = Z_BEST_COMPRESSION) throws {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = StandIn_deflateInit(stream, level)
        guard rc == Z_OK else {
            stream.deallocate()
            throw ZlibError(code: rc, operation: "deflateInit")
        }
        let set = dictionary.withUnsafeBufferPointer { deflateSetDictionary(stream, $0.baseAddress, uInt($0.count)) }
        guard set == Z_OK else {
            deflateEnd(stream)
            stream.deallocate()
            throw ZlibError(code: set, operation: "deflateSetDictionary")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// Compresses `input` and sync-flushes, so the peer can inflate everything sent so far.
    func compress(_ input: [UInt8]) throws -> [UInt8] {
        var input = input
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        try input.withUnsafeMutableBufferPointer { inBuffer in
            stream.pointee.next_in = inBuffer.baseAddress
            stream.pointee.avail_in = uInt(inBuffer.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            repeat {
                let produced = try chunk.withUnsafeMutableBufferPointer { outBuffer -> Int in
                    stream.pointee.next_out = outBuffer.baseAddress
                    stream.pointee.avail_out = uInt(outBuffer.count)
                    defer { stream.pointee.next_out = nil }
                    let rc = deflate(stream, Z_SYNC_FLUSH)
                    guard rc == Z_OK || rc == Z_BUF_ERROR else { throw ZlibError(code: rc, operation: "deflate") }
                    return outBuffer.count - Int(stream.pointee.avail_out)
                }
                output += chunk[0..<produced]
                if produced < chunk.count { break }
            } while true
        }
        return output
    }
}

/// The receiving half: inflates a stream that was compressed with a preset dictionary, block by block.
final class ZlibInflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let dictionary: [UInt8]

    init(dictionary: [UInt8]) throws {
        self.dictionary = dictionary
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let rc = StandIn_inflateInit(stream)
        guard rc == Z_OK else {
            stream.deallocate()
            throw ZlibError(code: rc, operation: "inflateInit")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Inflates one flushed block (all of `input` must be consumed).
    func decompress(_ input: [UInt8]) throws -> [UInt8] {
        var input = input
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        try input.withUnsafeMutableBufferPointer { inBuffer in
            stream.pointee.next_in = inBuffer.baseAddress
            stream.pointee.avail_in = uInt(inBuffer.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            while true {
                var rc: Int32 = Z_OK
                let produced = chunk.withUnsafeMutableBufferPointer { outBuffer -> Int in
                    stream.pointee.next_out = outBuffer.baseAddress
                    stream.pointee.avail_out = uInt(outBuffer.count)
                    defer { stream.pointee.next_out = nil }
                    rc = inflate(stream, Z_SYNC_FLUSH)
                    return outBuffer.count - Int(stream.pointee.avail_out)
                }
                output += chunk[0..<produced]
                switch rc {
                case Z_NEED_DICT:
                    let set = dictionary.withUnsafeBufferPointer { inflateSetDictionary(stream, $0.baseAddress, uInt($0.count)) }
                    guard set == Z_OK else { throw ZlibError(code: set, operation: "inflateSetDictionary") }
                case Z_OK, Z_BUF_ERROR, Z_STREAM_END:
                    if stream.pointee.avail_in == 0 && produced < chunk.count { return }
                    if rc == Z_BUF_ERROR && produced == 0 { return }
                    if rc == Z_STREAM_END { return }
                default:
                    throw ZlibError(code: rc, operation: "inflate")
                }
            }
        }
        return output
    }
}
