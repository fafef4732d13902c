/// A pattern that Go's `regexp.Compile` would reject, with Go's error text:
/// ``error parsing regexp: <code>: `<fragment>` `` (`regexp/syntax.Error`), so kubectl users see the same message.
public struct RE2SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Go's `regexp/syntax.ErrorCode` values that this parser can produce.
    public enum Code: String, Sendable {
        case invalidCharRange = "invalid character class range"
        case invalidEscape = "invalid escape sequence"
        case invalidNamedCapture = "invalid named capture"
        case invalidPerlOp = "invalid or unsupported Perl syntax"
        case invalidRepeatOp = "invalid nested repetition operator"
        case invalidRepeatSize = "invalid repeat count"
        case missingBracket = "missing closing ]"
        case missingParen = "missing closing )"
        case missingRepeatArgument = "missing argument to repetition operator"
        case trailingBackslash = "trailing backslash at end of expression"
        case unexpectedParen = "unexpected )"
        case nestingDepth = "expression nests too deeply"
        case tooLarge = "expression too large"
    }

    public let code: Code
    /// The part of the pattern Go quotes for this code (sometimes the whole pattern).
    public let fragment: String

    public init(_ code: Code, _ fragment: String) {
        self.code = code
        self.fragment = fragment
    }

    public var description: String { "error parsing regexp: \(code.rawValue): `\(fragment)`" }
}
