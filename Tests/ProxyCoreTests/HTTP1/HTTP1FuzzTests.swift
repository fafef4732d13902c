import Testing
@testable import ProxyCore

/// Bounded, seeded fuzzing: random and mutated inputs never crash, fail only with an `HTTP1Error` of an expected
/// status, and give the same outcome whether fed whole, one byte at a time or in random pieces.
@Suite("HTTP1 fuzz")
struct HTTP1FuzzTests {
    static let pieces: [String] = [
        "GET ", "POST ", "CONNECT ", "OPTIONS ", "/", "/a?b", "*", "h:1", "http://h/", " ", "  ", "\t", "HTTP/1.1",
        "HTTP/1.0", "HTTP/2.0", "\r\n", "\r\n\r\n", "\r", "\n", ":", ";", ",", "Host: a", "Content-Length: ",
        "Transfer-Encoding: chunked", "Transfer-Encoding: gzip", "Connection: close", "Connection: upgrade",
        "Connection: keep-alive", "Upgrade: websocket", "Upgrade: h2c", "Expect: 100-continue", "0", "5", "a",
        "ff", "10", "hello", "\u{0}", "\u{7F}", "\u{e9}", "HTTP/1.1 200 OK", "HTTP/1.1 100 Continue",
        "HTTP/1.1 101 Switching Protocols", "HTTP/1.1 204 ", "X-Trailer: t",
    ]

    static func randomInput(_ rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        if Bool.random(using: &rng) {
            for _ in 0..<Int.random(in: 0...120, using: &rng) { out.append(UInt8.random(in: 0...255, using: &rng)) }
        } else {
            for _ in 0..<Int.random(in: 0...30, using: &rng) { out += bytes(pieces.randomElement(using: &rng)!) }
        }
        return out
    }

    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let interesting: [UInt8] = [0x00, 0x09, 0x0A, 0x0D, 0x20, 0x2C, 0x3A, 0x3B, 0x30, 0x66, 0x7F, 0xFF]
            let byte = Bool.random(using: &rng)
                ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            let at = Int.random(in: 0...b.count, using: &rng)
            switch Int.random(in: 0..<6, using: &rng) {
            case 0 where at < b.count: b[at] = byte
            case 1: b.insert(byte, at: at)
            case 2 where at < b.count: b.remove(at: at)
            case 3:
                let end = min(b.count, at + Int.random(in: 1...16, using: &rng))
                b.insert(contentsOf: Array(b[at..<end]), at: at)
            case 4: b.removeSubrange(at...)
            default: b.insert(contentsOf: bytes(pieces.randomElement(using: &rng)!), at: at)
            }
        }
        return b
    }

    static func randomCuts(_ count: Int, _ rng: inout SplitMix64) -> [Int] {
        (0..<3).map { _ in Int.random(in: 0...count, using: &rng) }.sorted()
    }

    /// Events as a flat list with one entry per body byte, so that runs cut differently can be prefix-compared.
    static func flattened(_ events: [NormalizedEvent]) -> [String] {
        events.flatMap { event -> [String] in
            if case .body(let s) = event { return s.utf8.map { "byte \($0)" } }
            return [event.description]
        }
    }

    /// The parser throws as soon as it finds an error, dropping the events completed earlier in the same feed;
    /// so with an error only the error itself must match, and smaller feeds may only have delivered more events.
    static func check<P: ParserUnderTest>(
        _ make: () -> P, _ input: [UInt8], _ rng: inout SplitMix64, statuses: Set<Int>, completed: inout Int
    ) -> String? {
        let whole = run(make(), input, cuts: [])
        if let error = whole.error, !statuses.contains(error.status) { return "unexpected status \(error)" }
        let bytewise = run(make(), input, cuts: Array(0..<input.count))
        if bytewise.events.contains(.end) { completed += 1 }
        let cuts = randomCuts(input.count, &rng)
        let pieces = run(make(), input, cuts: cuts)
        if whole.error == nil {
            if bytewise != whole { return "byte at a time: \(bytewise) vs whole: \(whole)" }
            if pieces != whole { return "cuts \(cuts): \(pieces) vs whole: \(whole)" }
            return nil
        }
        if bytewise.error != whole.error { return "byte at a time: \(bytewise) vs whole: \(whole)" }
        if pieces.error != whole.error { return "cuts \(cuts): \(pieces) vs whole: \(whole)" }
        if !flattened(bytewise.events).starts(with: flattened(pieces.events)) {
            return "cuts \(cuts): \(pieces) not a prefix of byte at a time: \(bytewise)"
        }
        return nil
    }

    static func describe(_ input: [UInt8], _ failure: String) -> String {
        "\(String(decoding: input.prefix(300), as: UTF8.self).debugDescription): \(failure.prefix(600))"
    }

    @Test func requestParserSurvivesRandomAndMutatedInput() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        let seeds = validRequests.map { bytes($0.raw) } + rejectedRequests.map(\.raw).filter { $0.count < 1024 }
        var failures: [String] = []
        var parsedSome = 0
        for iteration in 0..<3000 {
            let input = iteration % 2 == 0
                ? Self.randomInput(&rng) : Self.mutate(seeds.randomElement(using: &rng)!, &rng)
            let statuses: Set = [400, 414, 431, 501, 505]
            if let failure = Self.check({ HTTP1RequestParser() }, input, &rng, statuses: statuses, completed: &parsedSome) {
                failures.append(Self.describe(input, failure))
            }
        }
        #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(2))")
        #expect(parsedSome > 50)  // the mutations still reach deep states, not only early rejections
    }

    @Test func responseParserSurvivesRandomAndMutatedInput() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        let seeds = validResponses.map { ($0.method, bytes($0.raw)) }
        var failures: [String] = []
        var completed = 0
        for iteration in 0..<3000 {
            let (method, seed) = seeds.randomElement(using: &rng)!
            let input = iteration % 2 == 0 ? Self.randomInput(&rng) : Self.mutate(seed, &rng)
            if let failure = Self.check({ HTTP1ResponseParser(requestMethod: method) }, input, &rng, statuses: [502], completed: &completed) {
                failures.append(Self.describe(input, failure))
            }
        }
        #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(2))")
    }

    @Test func smallLimitsStayConsistent() {
        var rng = SplitMix64(seed: 0x5EED_0003)
        let limits = HTTP1Limits(requestLine: 12, headerBytes: 24, headerCount: 2, chunkSizeDigits: 2, chunkLine: 6)
        let seeds = validRequests.map { bytes($0.raw) }
        var failures: [String] = []
        var completed = 0
        for _ in 0..<1000 {
            let input = Self.mutate(seeds.randomElement(using: &rng)!, &rng)
            if let failure = Self.check({ HTTP1RequestParser(limits: limits) }, input, &rng, statuses: [400, 414, 431, 501, 505], completed: &completed) {
                failures.append(Self.describe(input, failure))
            }
        }
        #expect(failures.isEmpty, "\(failures.count) failures, first: \(failures.prefix(2))")
    }
}
