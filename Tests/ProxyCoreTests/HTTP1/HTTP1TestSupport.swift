@testable import ProxyCore

/// Events with bodies merged, so that runs fed with different splits compare equal.
enum NormalizedEvent: Equatable, CustomStringConvertible {
    case request(HTTPRequestHead)
    case response(HTTPResponseHead)
    case body(String)
    case end

    var description: String {
        switch self {
        case .request(let h): "request(\(h.method) \(h.target) \(h.version) \(h.headers.fields.map { "\($0.name)=\($0.value)" }))"
        case .response(let h): "response(\(h.status) \(h.reason) \(h.version) \(h.headers.fields.map { "\($0.name)=\($0.value)" }))"
        case .body(let s): "body(\(s.debugDescription))"
        case .end: "end"
        }
    }
}

/// What a run produced: all events, the first error (the run stops there) and the tunnel/leftover bytes.
struct Outcome: Equatable, CustomStringConvertible {
    var events: [NormalizedEvent] = []
    var error: HTTP1Error?
    var remaining: [UInt8] = []

    var description: String {
        "events: \(events), error: \(error.map(\.description) ?? "none"), remaining: \(String(decoding: remaining, as: UTF8.self).debugDescription)"
    }
}

/// The two parsers behind one interface for table-driven tests.
protocol ParserUnderTest {
    mutating func feedNormalized(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [NormalizedEvent]
    mutating func finishNormalized() throws(HTTP1Error) -> [NormalizedEvent]
    mutating func takeRemainingBytes() -> [UInt8]
}

extension HTTP1RequestParser: ParserUnderTest {
    mutating func feedNormalized(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [NormalizedEvent] {
        try feed(bytes).map {
            switch $0 {
            case .head(let h): .request(h)
            case .body(let b): .body(String(decoding: b, as: UTF8.self))
            case .end: .end
            }
        }
    }

    mutating func finishNormalized() throws(HTTP1Error) -> [NormalizedEvent] {
        try finish()
        return []
    }
}

extension HTTP1ResponseParser: ParserUnderTest {
    mutating func feedNormalized(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [NormalizedEvent] {
        try feed(bytes).map(Self.normalize)
    }

    mutating func finishNormalized() throws(HTTP1Error) -> [NormalizedEvent] {
        try finish().map(Self.normalize)
    }

    private static func normalize(_ e: HTTP1ResponseEvent) -> NormalizedEvent {
        switch e {
        case .head(let h): .response(h)
        case .body(let b): .body(String(decoding: b, as: UTF8.self))
        case .end: .end
        }
    }
}

/// The response parser fed through `feed(_: ByteBuffer)` (body bytes as slices of the buffer, framing a line at a time).
struct BufferFedResponseParser: ParserUnderTest {
    var parser: HTTP1ResponseParser

    mutating func feedNormalized(_ bytes: ArraySlice<UInt8>) throws(HTTP1Error) -> [NormalizedEvent] {
        try parser.feed(ByteBuffer(bytes: bytes)).map {
            switch $0 {
            case .head(let h): .response(h)
            case .body(let b): .body(String(decoding: b.readableBytesArray, as: UTF8.self))
            case .end: .end
            }
        }
    }

    mutating func finishNormalized() throws(HTTP1Error) -> [NormalizedEvent] {
        try parser.finishNormalized()
    }

    mutating func takeRemainingBytes() -> [UInt8] { parser.takeRemainingBytes() }
}

/// Feeds `bytes` cut at `cuts` (ascending offsets), then finishes (when asked) and collects the outcome.
func run<P: ParserUnderTest>(_ parser: P, _ bytes: [UInt8], cuts: [Int], finish: Bool = true) -> Outcome {
    var parser = parser
    var outcome = Outcome()
    var raw: [NormalizedEvent] = []
    var start = 0
    do throws(HTTP1Error) {
        for end in cuts + [bytes.count] where end >= start {
            raw += try parser.feedNormalized(bytes[start..<end])
            start = end
        }
        if finish { raw += try parser.finishNormalized() }
    } catch {
        outcome.error = error
    }
    for event in raw {
        if case .body(let s) = event {
            if s.isEmpty { continue }
            if case .body(let previous) = outcome.events.last {
                outcome.events[outcome.events.count - 1] = .body(previous + s)
                continue
            }
        }
        outcome.events.append(event)
    }
    outcome.remaining = parser.takeRemainingBytes()
    return outcome
}

/// Whole, one byte at a time, and every two-piece split: all must give the same outcome as the whole feed.
func outcomesForAllSplits<P: ParserUnderTest>(
    _ parser: P, _ bytes: [UInt8], finish: Bool = true
) -> (whole: Outcome, mismatches: [String]) {
    let whole = run(parser, bytes, cuts: [], finish: finish)
    var mismatches: [String] = []
    let bytewise = run(parser, bytes, cuts: Array(0..<bytes.count), finish: finish)
    if bytewise != whole { mismatches.append("byte at a time: \(bytewise)") }
    for k in 0...bytes.count {
        let split = run(parser, bytes, cuts: [k], finish: finish)
        if split != whole { mismatches.append("split at \(k): \(split)") }
    }
    return (whole, mismatches)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func requestHead(_ method: String, _ target: String, _ headers: [(String, String)]) -> NormalizedEvent {
    requestHead(method, target, .http1_1, headers)
}

func requestHead(
    _ method: String, _ target: String, _ version: HTTPVersion, _ headers: [(String, String)]
) -> NormalizedEvent {
    .request(HTTPRequestHead(method: method, target: target, version: version, headers: HTTPHeaders(headers)))
}

func responseHead(_ status: Int, _ reason: String, _ headers: [(String, String)]) -> NormalizedEvent {
    responseHead(status, reason, .http1_1, headers)
}

func responseHead(
    _ status: Int, _ reason: String, _ version: HTTPVersion, _ headers: [(String, String)]
) -> NormalizedEvent {
    .response(HTTPResponseHead(status: status, reason: reason, version: version, headers: HTTPHeaders(headers)))
}

