import Testing

@testable import ProxyCore

/// `RE2Pattern` against Swift `Regex` as an oracle (tests only; proxyd does not link `_StringProcessing`), on
/// patterns whose meaning is the same in both (no `$` without `(?m)`, which Swift also matches before a final
/// newline; `\b` with Swift's simple word boundaries) and pseudo-random ASCII inputs that include newlines.
@Suite struct RE2DifferentialTests {
    static let patterns: [String] = [
        "a", "ab", "a.b", #"a\.b"#, "^a", #"b\z"#, "^a*b", "(a|b)+x", #"^(a|b)*\z"#, "[ab]+/",
        "[^ab]x", "[a-x]{2}", "x{2,3}", #"^.{3}\z"#, "a.*b", #"\d"#, #"\w+\.\w+"#, #"\bx"#, #"x\b"#, #"\Bb"#,
        #"\[a\]"#, #"[\[\]]{2}"#, "(?i)A", "(?m)^b", "(?m)a$", "(?s)a.b", "^/[a-z]+/", "(a|ab)(c|bcd)?1",
        "a?b?x", #"^(ab|a)*\z"#, "-+", "[-.]", #"(?:a|\.)+1"#, #"\s"#, #"\S{4}"#, #"^[^\n]*x\z"#, "1[^/]*/",
        "(a+)+b", "b{0}x", "[[:alpha:]]1", "a{2,}", "[ab][.-]", #"(?i)[A-B]+\]"#, #"^\W"#, "(?s:.)x",
    ]

    static let alphabet: [Character] = ["a", "b", "/", ".", "-", "x", "1", "[", "]", "\n"]

    @Test(arguments: patterns)
    func agreesWithSwiftRegex(_ pattern: String) throws {
        let ours = try RE2Pattern(pattern)
        let oracle = try Regex(pattern).wordBoundaryKind(.simple)
        var rng = SplitMix64(seed: 0x5EED_0000 &+ UInt64(pattern.utf8.count))
        var matched = 0
        for n in 0..<3000 {
            let length = Int(rng.next() % 13)
            var input = ""
            for _ in 0..<length { input.append(Self.alphabet[Int(rng.next() % UInt64(Self.alphabet.count))]) }
            let expected = (try? oracle.firstMatch(in: input)) != nil
            #expect(ours.matches(input) == expected, "input #\(n): \(String(reflecting: input))")
            if expected { matched += 1 }
        }
        // Each pattern both matches and misses some inputs, so the comparison can tell engines apart.
        #expect(matched > 0 && matched < 3000, "\(matched) of 3000 inputs match")
    }
}
