import Testing

@testable import ProxyCore

/// Rejected patterns give Go's `regexp.Compile` error text (`regexp/syntax.Error`: code and quoted fragment).
@Suite struct RE2SyntaxErrorTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var pattern: String
        var message: String
        init(_ pattern: String, _ message: String) {
            self.pattern = pattern
            self.message = message
        }
        var testDescription: String { "/\(pattern)/" }
    }

    static let cases: [Case] = [
        Case("^/api/(unclosed", "error parsing regexp: missing closing ): `^/api/(unclosed`"),
        Case("((a)", "error parsing regexp: missing closing ): `((a)`"),
        Case("(?i:a", "error parsing regexp: missing closing ): `(?i:a`"),
        Case(")", "error parsing regexp: unexpected ): `)`"),
        Case("a)", "error parsing regexp: unexpected ): `a)`"),
        Case("(a))", "error parsing regexp: unexpected ): `(a))`"),
        Case("*", "error parsing regexp: missing argument to repetition operator: `*`"),
        Case("+a", "error parsing regexp: missing argument to repetition operator: `+`"),
        Case("??", "error parsing regexp: missing argument to repetition operator: `??`"),
        Case("a|*", "error parsing regexp: missing argument to repetition operator: `*`"),
        Case("(*)", "error parsing regexp: missing argument to repetition operator: `*`"),
        Case("(?i)*", "error parsing regexp: missing argument to repetition operator: `*`"),
        Case("{2}", "error parsing regexp: missing argument to repetition operator: `{2}`"),
        Case("**", "error parsing regexp: missing argument to repetition operator: `*`"),
        Case("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
        Case("a*?+", "error parsing regexp: invalid nested repetition operator: `*?+`"),
        Case("a{2}*", "error parsing regexp: invalid nested repetition operator: `{2}*`"),
        Case("a++", "error parsing regexp: invalid nested repetition operator: `++`"),
        Case("a{1001}", "error parsing regexp: invalid repeat count: `{1001}`"),
        Case("a{1001,}", "error parsing regexp: invalid repeat count: `{1001,}`"),
        Case("a{0,1001}", "error parsing regexp: invalid repeat count: `{0,1001}`"),
        Case("a{2,1}", "error parsing regexp: invalid repeat count: `{2,1}`"),
        Case("a{100000000}", "error parsing regexp: invalid repeat count: `{100000000}`"),
        Case("(a{500}){3}", "error parsing regexp: invalid repeat count: `{3}`"),
        Case("((a{10}){10}){11}", "error parsing regexp: invalid repeat count: `{11}`"),
        Case(#"\q"#, #"error parsing regexp: invalid escape sequence: `\q`"#),
        Case(#"\8"#, #"error parsing regexp: invalid escape sequence: `\8`"#),
        Case(#"(a)\1"#, #"error parsing regexp: invalid escape sequence: `\1`"#),
        Case(#"\C"#, #"error parsing regexp: invalid escape sequence: `\C`"#),
        Case(#"a\Z"#, #"error parsing regexp: invalid escape sequence: `\Z`"#),
        Case(#"\xg1"#, #"error parsing regexp: invalid escape sequence: `\xg1`"#),
        Case(#"\x4"#, #"error parsing regexp: invalid escape sequence: `\x4`"#),
        Case(#"\x{}"#, #"error parsing regexp: invalid escape sequence: `\x{}`"#),
        Case(#"\x{12"#, #"error parsing regexp: invalid escape sequence: `\x{12`"#),
        Case(#"\x{110000}"#, #"error parsing regexp: invalid escape sequence: `\x{110000`"#),
        Case(#"\é"#, #"error parsing regexp: invalid escape sequence: `\é`"#),
        Case(#"[\b]"#, #"error parsing regexp: invalid escape sequence: `\b`"#),
        Case(#"a\"#, "error parsing regexp: trailing backslash at end of expression: ``"),
        Case("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
        Case("x[ab-a]", "error parsing regexp: invalid character class range: `b-a`"),
        Case("[[:foo:]]", "error parsing regexp: invalid character class range: `[:foo:]`"),
        Case(#"\p{Greek}"#, #"error parsing regexp: invalid character class range: `\p{Greek}`"#),
        Case(#"[\p{Foo}]"#, #"error parsing regexp: invalid character class range: `\p{Foo}`"#),
        Case(#"\pX"#, #"error parsing regexp: invalid character class range: `\pX`"#),
        Case(#"\p{L"#, #"error parsing regexp: invalid character class range: `\p{L`"#),
        Case(#"\p"#, #"error parsing regexp: invalid character class range: `\p`"#),
        Case("[a-z", "error parsing regexp: missing closing ]: `[a-z`"),
        Case("x[a", "error parsing regexp: missing closing ]: `[a`"),
        Case("[]", "error parsing regexp: missing closing ]: `[]`"),
        Case("[^]", "error parsing regexp: missing closing ]: `[^]`"),
        Case("[", "error parsing regexp: missing closing ]: `[`"),
        Case("(?<", "error parsing regexp: invalid or unsupported Perl syntax: `(?<`"),
        Case("(?=x)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
        Case("(?!x)", "error parsing regexp: invalid or unsupported Perl syntax: `(?!`"),
        Case("(?P=n)", "error parsing regexp: invalid or unsupported Perl syntax: `(?P`"),
        Case("(?x)", "error parsing regexp: invalid or unsupported Perl syntax: `(?x`"),
        Case("(?i", "error parsing regexp: invalid or unsupported Perl syntax: `(?i`"),
        Case("(?-)", "error parsing regexp: invalid or unsupported Perl syntax: `(?-)`"),
        Case("(?i-)", "error parsing regexp: invalid or unsupported Perl syntax: `(?i-)`"),
        Case("(?--i)", "error parsing regexp: invalid or unsupported Perl syntax: `(?--`"),
        Case("(?P<name", "error parsing regexp: invalid named capture: `(?P<name`"),
        Case("(?P<>a)", "error parsing regexp: invalid named capture: `(?P<>`"),
        Case("(?<a-b>x)", "error parsing regexp: invalid named capture: `(?<a-b>`"),
    ]

    @Test(arguments: cases)
    func goErrorText(_ c: Case) {
        #expect(throws: RE2SyntaxError.self) { try RE2Pattern(c.pattern) }
        do {
            _ = try RE2Pattern(c.pattern)
        } catch {
            #expect(error.description == c.message)
        }
    }

    @Test func nestingDeeperThanGoAllowsIsRejected() {
        let depth = RE2Parser.maxDepth + 1
        let pattern = String(repeating: "(", count: depth) + "a" + String(repeating: ")", count: depth)
        do {
            _ = try RE2Pattern(pattern)
            Issue.record("accepted \(depth) levels")
        } catch {
            #expect(error.code == .nestingDepth)
            #expect(error.fragment == pattern)
        }
    }

    @Test func validEdgeCasesCompile() throws {
        for pattern in ["", "|", "()", "(?:)", "(?i)", "(?)", "a{,5}", "x{", "^*", #"\b+"#, "(?P<n_1>a)", "(?<N>a)",
                        "[]a]", "[^]a]", "[a-]", "a*?", "a{2}?", #"\Q\E"#, #"\Qab"#, #"[\x{10FFFF}]"#] {
            _ = try RE2Pattern(pattern)
        }
    }
}
