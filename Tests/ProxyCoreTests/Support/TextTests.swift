import Testing

@testable import ProxyCore

/// The substring helpers that stand in for `_StringProcessing`'s `firstRange(of:)` and `contains(_: String)`.
@Suite struct TextTests {
    @Test func rangeOfText() {
        let s = "http://user@host:1/a://b"
        let r = s.range(ofText: "://")
        #expect(r.map { String(s[..<$0.lowerBound]) } == "http")
        #expect(r.map { String(s[$0.upperBound...]) } == "user@host:1/a://b")
        #expect("aab".range(ofText: "ab").map { "aab".distance(from: "aab".startIndex, to: $0.lowerBound) } == 1)
        #expect("abc".range(ofText: "abcd") == nil)
        #expect("ab:/".range(ofText: "://") == nil)
        #expect("".range(ofText: "a") == nil)
        #expect("abc".range(ofText: "") == "abc".startIndex..<"abc".startIndex)
        let sub = "xx-a://b"[...].dropFirst(3)
        #expect(sub.range(ofText: "://").map { String(sub[..<$0.lowerBound]) } == "a")
    }

    @Test func containsText() {
        #expect("proxy:3128".containsText("://") == false)
        #expect("socks5://p".containsText("://"))
        #expect("é://".containsText("é:"))
        #expect("e\u{301}x".containsText("e") == false)  // Character comparison, as String.contains
    }
}
