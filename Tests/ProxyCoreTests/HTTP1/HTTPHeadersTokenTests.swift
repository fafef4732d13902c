import Testing
@testable import ProxyCore

@Suite struct HTTPHeadersTokenTests {
    @Test(arguments: [
        ("close", "close", true),
        ("Close", "close", true),
        ("keep-alive, Upgrade", "upgrade", true),
        ("keep-alive,upgrade", "upgrade", true),
        (" \tupgrade\t ", "upgrade", true),
        (",,close,", "close", true),
        ("closed", "close", false),
        ("clos", "close", false),
        ("close-ish, x", "close", false),
        ("", "close", false),
        ("  ,  ", "close", false),
        ("k\u{212A}eep", "keep", false),   // non-ASCII never matches an ASCII token
    ])
    func findsTokens(value: String, token: String, expected: Bool) {
        let headers = HTTPHeaders([("Host", "x"), ("Connection", value)])
        #expect(headers.containsToken("connection", token) == expected)
        #expect(!headers.containsToken("upgrade", token))   // no such field
    }

    @Test func looksAtEveryFieldOfTheName() {
        let headers = HTTPHeaders([("Connection", "keep-alive"), ("X", "close"), ("CONNECTION", "foo, Close")])
        #expect(headers.containsToken("Connection", "close"))
        #expect(headers.containsToken("connection", "keep-alive"))
        #expect(!headers.containsToken("connection", "upgrade"))
    }

    /// Agrees with `tokens(_:).contains(_:)` (which lowercases and trims whole elements) on ASCII values.
    @Test func agreesWithTheTokenList() {
        let pieces = ["close", "Close", "keep-alive", "upgrade", " ", "\t", ",", "x", "CLOSE", "clo", "se"]
        var state: UInt64 = 42
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: state >> 33)
        }
        for _ in 0..<3000 {
            let value = (0..<(next() % 7)).map { _ in pieces[next() % pieces.count] }.joined()
            let headers = HTTPHeaders([("Connection", value)])
            for token in ["close", "keep-alive", "upgrade", "x"] {
                #expect(headers.containsToken("connection", token) == headers.tokens("connection").contains(token),
                        "value \(value.debugDescription), token \(token)")
            }
        }
    }
}
