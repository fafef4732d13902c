@testable import ProxyCore

/// Chunked transfer coding both ways: `HTTP1BodyDecoder` (shared by both parsers) and `HTTP1Serializer.chunk`.
///
/// Input: a control byte (bit 0: small limits), two cut bytes, then the payload.
/// Decode: the payload as a chunked body, whole and in pieces, gives the same data, end and error; a body that
/// decodes cleanly never yields more bytes than it consumed, and its data encoded again decodes to the same data.
/// Encode: the payload, cut into chunks at the cut positions and encoded with `chunk` + `lastChunk`, decodes back
/// to the payload exactly, consuming every byte and ending right at the end.
enum ChunkedFuzz {
    struct Outcome: Equatable {
        var data: [UInt8] = []
        var ended = false
        var consumed = 0
        var error: HTTP1Error?
    }

    static func decode(_ bytes: [UInt8], cutAt positions: [Int], limits: HTTP1Limits) -> Outcome {
        var decoder = HTTP1BodyDecoder(framing: .chunked, limits: limits)
        var outcome = Outcome()
        do {
            for piece in pieces(bytes, at: positions) {
                var index = piece.startIndex
                let ended = try decoder.decode(piece, &index) { outcome.data += $0 }
                outcome.consumed += index - piece.startIndex
                if ended {
                    outcome.ended = true
                    break
                }
                require(index == piece.endIndex, "decoder stopped early without ending")
            }
        } catch {
            outcome.error = error
        }
        return outcome
    }

    static func encode(_ data: [UInt8], cutAt positions: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        for piece in pieces(data, at: positions) { out += HTTP1Serializer.chunk(piece) }
        return out + HTTP1Serializer.lastChunk
    }

    static func run(_ data: [UInt8]) {
        let input = ControlledInput(data)
        let payload = input.payload, positions = input.cutPositions
        let limits = input.control & 1 == 0 ? HTTP1Limits() : smallLimits

        // Decode arbitrary bytes.
        let whole = decode(payload, cutAt: [], limits: limits)
        let split = decode(payload, cutAt: positions, limits: limits)
        if let error = whole.error {
            require(error.status == 400 || error.status == 431, "chunked error with status \(error.status)")
            require(split.error == error, "fed in pieces: \(String(describing: split.error)), whole: \(error)")
        } else {
            require(whole == split, "fed whole and in pieces, the decodes differ:\n\(whole)\n\(split)")
            require(whole.data.count <= whole.consumed, "decoded more than consumed")
            if whole.ended {
                let again = encode(whole.data, cutAt: [])
                let redecoded = decode(again, cutAt: [], limits: HTTP1Limits())
                require(redecoded.ended && redecoded.data == whole.data && redecoded.consumed == again.count,
                        "decoded data does not survive encoding: \(redecoded)")
            }
        }

        // Encode, then decode: a round trip.
        let encoded = encode(payload, cutAt: positions)
        for decodePositions in [[], cuts(encoded.count, input.cutBytes.b, input.cutBytes.a)] {
            let back = decode(encoded, cutAt: decodePositions, limits: HTTP1Limits())
            require(back.error == nil && back.ended && back.data == payload && back.consumed == encoded.count,
                    "round trip failed: \(back) for \(payload.count) bytes in \(positions)")
        }
    }
}
