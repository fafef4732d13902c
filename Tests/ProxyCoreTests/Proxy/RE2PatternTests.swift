import Testing

@testable import ProxyCore

/// `RE2Pattern`: Go `regexp` semantics for the syntax kubectl proxy's filter flags take (`MatchString`, unanchored).
@Suite struct RE2PatternTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var pattern: String
        var input: String
        var matches: Bool
        init(_ pattern: String, _ input: String, _ matches: Bool) {
            self.pattern = pattern
            self.input = input
            self.matches = matches
        }
        var testDescription: String { "/\(pattern)/ on \"\(input)\" → \(matches)" }
    }

    static let kubectlDefaults: [Case] = [
        Case(#"^localhost$"#, "localhost", true),
        Case(#"^localhost$"#, "localhost.", false),
        Case(#"^localhost$"#, "xlocalhost", false),
        Case(#"^localhost$"#, "localhost\n", false),  // `$` is the end of the text, not before a final newline
        Case(#"^127\.0\.0\.1$"#, "127.0.0.1", true),
        Case(#"^127\.0\.0\.1$"#, "127a0b0c1", false),
        Case(#"^\[::1\]$"#, "[::1]", true),
        Case(#"^\[::1\]$"#, "[::1]:8001", false),
        Case(#"^/api/.*/pods/.*/exec"#, "/api/v1/namespaces/default/pods/foo/exec", true),
        Case(#"^/api/.*/pods/.*/exec"#, "/api/v1/namespaces/default/pods/foo/execfoo", true),
        Case(#"^/api/.*/pods/.*/exec"#, "/apis/v1/namespaces/default/pods/foo/exec", false),
        Case(#"^/api/.*/pods/.*/exec"#, "/x/api/v1/pods/foo/exec", false),
        Case(#"^/api/.*/pods/.*/exec"#, "/api/v1/pods/foo\n/exec", false),  // `.` does not match a newline
        Case("^$", "", true),
        Case("^$", "GET", false),
        Case("^.*", "", true),
        Case("^.*", "/anything", true),
    ]

    static let syntax: [Case] = [
        // Unanchored search.
        Case("POST", "POST", true),
        Case("POST", "POSTX", true),
        Case("POST", "XPOST", true),
        Case("POST", "post", false),
        Case("POST", "POS", false),
        Case("", "", true),
        Case("", "anything", true),
        Case("b", "abc", true),
        Case("bd", "abcbd", true),
        Case("abd", "abcabd", true),
        // Escapes.
        Case(#"a\.b"#, "a.b", true),
        Case(#"a\.b"#, "axb", false),
        Case(#"\\"#, #"a\b"#, true),
        Case(#"\/\-\_\:"#, "/-_:", true),
        Case(#"\t\n\r\f\v\a"#, "\t\n\r\u{0C}\u{0B}\u{07}", true),
        Case(#"\x41\x{263a}"#, "A\u{263A}", true),
        Case(#"\x{1F600}"#, "smile \u{1F600}", true),
        Case(#"\101\0"#, "A\u{0}", true),
        Case(#"\Qa.b*\E+"#, "a.b**", true),
        Case(#"\Qa.b"#, "axb", false),
        Case(#"\Qa.b"#, "a.b", true),
        // Dot.
        Case("a.c", "abc", true),
        Case("a.c", "a\nc", false),
        Case("(?s)a.c", "a\nc", true),
        Case("(?s:a.c)", "a\nc", true),
        Case("a.c", "a\u{E9}c", true),  // one scalar
        Case("^.$", "\u{1F600}", true),
        // Classes.
        Case("[abc]", "xbx", true),
        Case("[abc]", "xyz", false),
        Case("^[^a-z]+$", "ABC123", true),
        Case("^[^a-z]+$", "ABc", false),
        Case("[^a]", "\n", true),  // negated classes match newlines (Perl flags)
        Case("^[]a]+$", "]a]", true),
        Case("^[a-]+$", "a-a", true),
        Case("^[-a]+$", "-a", true),
        Case(#"^[\d\w\s]+$"#, "a_1 \t", true),
        Case(#"^[\d\w\s]+$"#, "a-1", false),
        Case("^[[:alpha:]]+$", "abcXYZ", true),
        Case("^[[:alpha:]]+$", "abc1", false),
        Case("^[[:^space:]]+$", "a-b", true),
        Case("^[[:^space:]]+$", "a b", false),
        Case("[[:digit:][:upper:]]", "xQx", true),
        Case("[[:punct:]]", "a!", true),
        Case("[[:xdigit:]]", "g", false),
        Case(#"[\x41-\x43]"#, "B", true),
        Case(#"[\.]"#, ".", true),
        Case(#"[\.]"#, "a", false),
        Case("[é-ë]", "ê", true),
        // Perl classes (ASCII only, as RE2).
        Case(#"^\d+$"#, "0123456789", true),
        Case(#"\d"#, "\u{0663}", false),  // ARABIC-INDIC DIGIT THREE is not \d in RE2
        Case(#"^\D+$"#, "abc", true),
        Case(#"^\w+$"#, "a_Z9", true),
        Case(#"\w"#, "\u{E9}", false),
        Case(#"^\W+$"#, "-/.", true),
        Case(#"^\s+$"#, " \t\n\r\u{0C}", true),
        Case(#"\s"#, "\u{0B}", false),  // RE2's \s has no \v
        Case(#"^\S+$"#, "ab", true),
        // Unicode general categories.
        Case(#"^\pL+$"#, "abcé\u{3B1}", true),
        Case(#"\pL"#, "123", false),
        Case(#"^\p{Lu}+$"#, "AÉ", true),
        Case(#"^\p{Lu}+$"#, "Aé", false),
        Case(#"\PL"#, "abc", false),
        Case(#"\p{^L}"#, "ab1", true),
        Case(#"^[\p{N}x]+$"#, "x1\u{0663}", true),
        Case(#"^\p{Any}+$"#, "a\n\u{1F600}", true),
        Case(#"\p{ASCII}"#, "\u{E9}", false),
        // Anchors.
        Case("^a", "ba", false),
        Case("a$", "ab", false),
        Case(#"\Aab\z"#, "ab", true),
        Case(#"\Aab\z"#, "ab\n", false),
        Case("(?m)^b$", "a\nb\nc", true),
        Case("^b$", "a\nb\nc", false),
        Case("(?m)a$", "a\nb", true),
        Case(#"(?m)\Ab"#, "a\nb", false),
        Case("x^", "x", false),
        Case("$x", "x", false),
        Case("^*a", "a", true),  // Go allows repeating an empty-width assertion
        // Word boundaries (ASCII).
        Case(#"\bfoo\b"#, "a foo b", true),
        Case(#"\bfoo\b"#, "afoo", false),
        Case(#"\bfoo\b"#, "foo_", false),
        Case(#"\bfoo\b"#, "foo", true),
        Case(#"\bfoo\b"#, "é foo", true),
        Case(#"\Boo\B"#, "foob", true),
        Case(#"\Boo"#, " oo", false),
        // Groups, alternation, flags.
        Case("^(ab)+$", "ababab", true),
        Case("^(ab)+$", "ababa", false),
        Case("^(?:ab|cd)$", "cd", true),
        Case("^(?P<verb>GET|HEAD)$", "HEAD", true),
        Case("^(?<verb>GET|HEAD)$", "GETX", false),
        Case("^(a|)$", "", true),
        Case("^(a|)$", "a", true),
        Case("^(|a)b$", "b", true),
        Case("^a|b$", "xxb", true),
        Case("^a|b$", "axx", true),
        Case("^a|b$", "xax", false),
        Case("a|", "zzz", true),
        Case("^(?i)localhost$", "LocalHost", true),
        Case("(?i)ß", "ß", true),
        Case("^(?i)[a-c]+$", "AbC", true),
        Case("^(?i)[^a]$", "A", false),
        Case("(?i)é", "É", true),
        Case("(?i)k", "\u{212A}", true),  // KELVIN SIGN folds to k
        Case(#"(?i)\x{212A}"#, "k", true),
        Case("(?i)s", "\u{17F}", true),  // LATIN SMALL LETTER LONG S folds to s
        Case(#"(?i)\W"#, "\u{212A}", false),
        Case("a(?i)b", "aB", true),
        Case("a(?i)b", "AB", false),
        Case("(?i:a)b", "Ab", true),
        Case("(?i:a)b", "AB", false),
        Case("(?i)a(?-i)b", "Ab", true),
        Case("(?i)a(?-i)b", "AB", false),
        Case("(a(?i)b)c", "aBc", true),
        Case("(a(?i)b)c", "aBC", false),  // flags end with their group
        Case("(?i)a|b", "B", true),  // flags reach later alternatives
        Case("(?U)a+?", "a", true),
        Case("(?ims-U)^A.$", "x\na\n", true),
        Case("(?)a", "a", true),
        // Repetition.
        Case("^a*$", "", true),
        Case("^a+$", "", false),
        Case("^a?$", "aa", false),
        Case("^a{3}$", "aaa", true),
        Case("^a{3}$", "aa", false),
        Case("^a{3}$", "aaaa", false),
        Case("^a{2,}$", "a", false),
        Case("^a{2,}$", "aaaaaaa", true),
        Case("^a{2,4}$", "a", false),
        Case("^a{2,4}$", "aa", true),
        Case("^a{2,4}$", "aaaa", true),
        Case("^a{2,4}$", "aaaaa", false),
        Case("^a{0}$", "", true),
        Case("^a{0}$", "a", false),
        Case("^a{0,1}$", "a", true),
        Case("^(ab){1,2}c$", "ababc", true),
        Case("^a*?b+?c??d{1,2}?$", "abd", true),
        Case("a{,2}", "a{,2}", true),  // not a repeat count: literal braces
        Case("a{", "a{", true),
        Case("a{1", "a{1", true),
        Case("a{01}", "a{01}", true),  // leading zeros: literal
        Case("x{2}{", "xx{", true),
        Case("^(a*)*$", "aaa", true),
        Case("^(a*)+b$", "aab", true),
        Case("^(a|b)*abb$", "babaabb", true),
        Case("^(a?){3}a{3}$", "aaa", true),
        Case("^[a-z]+://[^/]+/", "https://example.com/x", true),
        Case(#"^/api/v1/namespaces/[^/]+/pods/[^/]+/(exec|attach|portforward)$"#,
             "/api/v1/namespaces/ns/pods/p/portforward", true),
        Case(#"^/api/v1/namespaces/[^/]+/pods/[^/]+/(exec|attach|portforward)$"#,
             "/api/v1/namespaces/ns/pods/p/x/exec", false),
        // Characters that are only special in some places.
        Case("a]b}", "a]b}", true),
        Case("^-$", "-", true),
    ]

    @Test(arguments: kubectlDefaults)
    func kubectlDefaultPatterns(_ c: Case) throws {
        #expect(try RE2Pattern(c.pattern).matches(c.input) == c.matches)
    }

    @Test(arguments: syntax)
    func matching(_ c: Case) throws {
        #expect(try RE2Pattern(c.pattern).matches(c.input) == c.matches)
    }

    /// `^(a+)+$` and `(a|aa)*b` take exponential time in a backtracking engine on a long run of `a`s with no match;
    /// the Pike VM visits each instruction at most once per input position, so these finish. (No timing assertion:
    /// a backtracking implementation would simply not complete.)
    @Test func pathologicalPatternsRunInLinearTime() throws {
        let run = String(repeating: "a", count: 50_000)
        #expect(try RE2Pattern("^(a+)+$").matches(run))
        #expect(try RE2Pattern("^(a+)+$").matches(run + "b") == false)
        #expect(try RE2Pattern("(a|aa)*b").matches(run) == false)
        #expect(try RE2Pattern("(a|aa)*b").matches(run + "b"))
        #expect(try RE2Pattern("^(a*)*(a*)*c$").matches(run) == false)
        #expect(try RE2Pattern("(x+x+)+y").matches(String(repeating: "x", count: 50_000)) == false)
        #expect(try RE2Pattern("^(.*)*/exec$").matches(String(repeating: "/a", count: 25_000)) == false)
    }

    /// The program grows linearly with repeat counts (bounded by Go's 1000 limit), not exponentially.
    @Test func programSizeIsBounded() throws {
        #expect(try RE2Pattern("a{1000}").programSize == 1001)
        #expect(try RE2Pattern("(a{10}){100}").programSize == 1001)
        let long = String(repeating: "a", count: 999) + "b"
        #expect(try RE2Pattern("^a{1000}$").matches(String(repeating: "a", count: 1000)))
        #expect(try RE2Pattern("^a{1000}$").matches(long) == false)
    }

    /// Go allows 1000 levels of nesting.
    @Test func deepNestingWithinGoLimit() throws {
        let depth = 200
        let pattern = String(repeating: "(", count: depth) + "a" + String(repeating: ")", count: depth)
        #expect(try RE2Pattern(pattern).matches("xay"))
    }
}
