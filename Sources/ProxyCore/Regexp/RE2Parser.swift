/// Parse tree of an RE2 pattern.
indirect enum RE2Node: Sendable {
    case empty
    case literal(UInt32)
    case charClass(RE2CharClass)
    case anyChar
    case anyCharNotNL
    case assertion(RE2Assertion)
    case concat([RE2Node])
    case alternate([RE2Node])
    /// `max == -1` means unbounded. `counted` is `{n,m}` (limited by the repeat-count rules), not `* + ?`.
    case repetition(RE2Node, min: Int, max: Int, counted: Bool)
}

enum RE2Assertion: Sendable {
    case beginText, endText, beginLine, endLine, wordBoundary, notWordBoundary
}

/// A parser for Go's `regexp/syntax` with the `Perl` flags that `regexp.Compile` uses: Perl classes and flags,
/// non-greedy operators, `\A \z \b \B \Q…\E`, named groups, `\p{…}` general categories; `^`/`$` match at the text
/// ends unless `(?m)`. Errors carry Go's codes and quoted fragments (`regexp/syntax/parse.go`).
struct RE2Parser {
    struct Flags {
        var foldCase = false
        var dotNL = false
        var multiLine = false
        var nonGreedy = false
    }

    static let maxRepeat = 1000
    static let maxDepth = 1000

    private let p: [Unicode.Scalar]
    private let whole: String
    private var i = 0
    private var flags = Flags()
    private var depth = 0

    init(_ pattern: String) {
        p = Array(pattern.unicodeScalars)
        whole = pattern
    }

    mutating func parse() throws(RE2SyntaxError) -> RE2Node {
        let node = try parseAlternation()
        if i < p.count { throw RE2SyntaxError(.unexpectedParen, whole) }  // a `)` with no group open
        return node
    }

    // MARK: Structure

    private mutating func parseAlternation() throws(RE2SyntaxError) -> RE2Node {
        var alternatives = [try parseConcatenation()]
        while i < p.count, p[i] == "|" {
            i += 1
            alternatives.append(try parseConcatenation())
        }
        return alternatives.count == 1 ? alternatives[0] : .alternate(alternatives)
    }

    private mutating func parseConcatenation() throws(RE2SyntaxError) -> RE2Node {
        var items: [RE2Node] = []
        var lastRepeat: Int?  // start of the repetition operator just before, for `a**`
        while i < p.count {
            var repeatStart: Int?
            switch p[i] {
            case "|", ")":
                return Self.concatenation(items)
            case "(":
                if i + 1 < p.count, p[i + 1] == "?" {
                    if let group = try parsePerlGroup() { items.append(group) }
                } else {
                    i += 1
                    items.append(try parseGroupBody())
                }
            case "^":
                items.append(.assertion(flags.multiLine ? .beginLine : .beginText))
                i += 1
            case "$":
                items.append(.assertion(flags.multiLine ? .endLine : .endText))
                i += 1
            case ".":
                items.append(flags.dotNL ? .anyChar : .anyCharNotNL)
                i += 1
            case "[":
                items.append(try parseClass())
            case "*", "+", "?":
                let start = i
                let (min, max) = p[i] == "*" ? (0, -1) : p[i] == "+" ? (1, -1) : (0, 1)
                i += 1
                try applyRepetition(&items, start: start, min: min, max: max, counted: false, lastRepeat: lastRepeat)
                repeatStart = start
            case "{":
                let start = i
                guard let (min, max, end) = parseRepeatCount(at: i) else {
                    items.append(literal("{"))  // not a repeat count: `{` is a literal
                    i += 1
                    break
                }
                i = end
                if min < 0 || min > Self.maxRepeat || max > Self.maxRepeat || (max >= 0 && min > max) {
                    throw RE2SyntaxError(.invalidRepeatSize, fragment(start, i))
                }
                try applyRepetition(&items, start: start, min: min, max: max, counted: true, lastRepeat: lastRepeat)
                repeatStart = start
            case "\\":
                if let node = try parseBackslash() { items.append(node) }
            default:
                items.append(literal(p[i].value))
                i += 1
            }
            lastRepeat = repeatStart
        }
        return Self.concatenation(items)
    }

    private static func concatenation(_ items: [RE2Node]) -> RE2Node {
        switch items.count {
        case 0: .empty
        case 1: items[0]
        default: .concat(items)
        }
    }

    /// Parses up to and including the `)` of a group whose `(` (or `(?:`, `(?P<name>`) was consumed.
    /// Flags set inside the group end with it.
    private mutating func parseGroupBody(restoring saved: Flags? = nil) throws(RE2SyntaxError) -> RE2Node {
        let outer = saved ?? flags
        depth += 1
        if depth > Self.maxDepth { throw RE2SyntaxError(.nestingDepth, whole) }
        let node = try parseAlternation()
        guard i < p.count, p[i] == ")" else { throw RE2SyntaxError(.missingParen, whole) }
        i += 1
        depth -= 1
        flags = outer
        return node
    }

    private mutating func applyRepetition(
        _ items: inout [RE2Node], start: Int, min: Int, max: Int, counted: Bool, lastRepeat: Int?
    ) throws(RE2SyntaxError) {
        if i < p.count, p[i] == "?" { i += 1 }  // non-greedy: the same answer for a yes/no match
        if let lastRepeat { throw RE2SyntaxError(.invalidRepeatOp, fragment(lastRepeat, i)) }
        guard let operand = items.popLast() else {
            throw RE2SyntaxError(.missingRepeatArgument, fragment(start, i))
        }
        let node = RE2Node.repetition(operand, min: min, max: max, counted: counted)
        if counted, min >= 2 || max >= 2, !Self.repeatIsValid(node, Self.maxRepeat) {
            throw RE2SyntaxError(.invalidRepeatSize, fragment(start, i))
        }
        items.append(node)
    }

    /// Go's rule: nested counted repetitions may not multiply past 1000 copies of the innermost expression.
    private static func repeatIsValid(_ node: RE2Node, _ limit: Int) -> Bool {
        var n = limit
        switch node {
        case .repetition(let sub, let min, let max, let counted):
            if counted {
                var m = max
                if m == 0 { return true }
                if m < 0 { m = min }
                if m > n { return false }
                if m > 0 { n /= m }
            }
            return repeatIsValid(sub, n)
        case .concat(let subs), .alternate(let subs):
            return subs.allSatisfy { repeatIsValid($0, n) }
        default:
            return true
        }
    }

    /// `{n}`, `{n,}` or `{n,m}` at `start`: (min, max, index after `}`); nil if it is not one (then `{` is a
    /// literal). Numbers of 9 or more digits give min -1 (an invalid count), as Go.
    private func parseRepeatCount(at start: Int) -> (Int, Int, Int)? {
        var t = start + 1
        guard let (min, afterMin) = parseInt(at: t) else { return nil }
        t = afterMin
        guard t < p.count else { return nil }
        var max = min
        var minOut = min
        if p[t] == "," {
            t += 1
            guard t < p.count else { return nil }
            if p[t] == "}" {
                max = -1
            } else {
                guard let (m, afterMax) = parseInt(at: t) else { return nil }
                t = afterMax
                max = m
                if m < 0 { minOut = -1 }
            }
        }
        guard t < p.count, p[t] == "}" else { return nil }
        return (minOut, max, t + 1)
    }

    private func parseInt(at start: Int) -> (Int, Int)? {
        guard start < p.count, Self.isDigit(p[start]) else { return nil }
        if start + 1 < p.count, p[start] == "0", Self.isDigit(p[start + 1]) { return nil }  // no leading zeros
        var t = start
        var n = 0
        while t < p.count, Self.isDigit(p[t]) {
            if n >= 100_000_000 {
                n = -1
            } else if n >= 0 {
                n = n * 10 + Int(p[t].value - 0x30)
            }
            t += 1
        }
        return (n, t)
    }

    // MARK: Groups and flags

    /// `(?…`: a named group, a non-capturing group (maybe with flags) or a flag change (returns nil).
    private mutating func parsePerlGroup() throws(RE2SyntaxError) -> RE2Node? {
        let s = i
        let remaining = p.count - s
        let startsWithP = remaining > 4 && p[s + 2] == "P" && p[s + 3] == "<"
        let startsWithName = remaining > 3 && p[s + 2] == "<"
        if startsWithP || startsWithName {
            let nameStart = s + (startsWithP ? 4 : 3)
            guard let end = p[s...].firstIndex(of: ">") else {
                throw RE2SyntaxError(.invalidNamedCapture, fragment(s, p.count))
            }
            let name = p[nameStart..<end]
            if name.isEmpty || !name.allSatisfy({ $0 == "_" || Self.isAlnum($0) }) {
                throw RE2SyntaxError(.invalidNamedCapture, fragment(s, end + 1))
            }
            i = end + 1
            return try parseGroupBody()
        }

        var t = s + 2
        var newFlags = flags
        var negate = false
        var sawFlag = false
        loop: while t < p.count {
            let c = p[t]
            t += 1
            switch c {
            case "i":
                newFlags.foldCase = !negate
                sawFlag = true
            case "m":
                newFlags.multiLine = !negate
                sawFlag = true
            case "s":
                newFlags.dotNL = !negate
                sawFlag = true
            case "U":
                newFlags.nonGreedy = !negate
                sawFlag = true
            case "-":
                if negate { break loop }
                negate = true
                sawFlag = false
            case ":", ")":
                if negate, !sawFlag { break loop }
                i = t
                if c == ":" {
                    let outer = flags
                    flags = newFlags
                    return try parseGroupBody(restoring: outer)
                }
                flags = newFlags
                return nil
            default:
                break loop
            }
        }
        throw RE2SyntaxError(.invalidPerlOp, fragment(s, t))
    }

    // MARK: Escapes

    /// A backslash outside a class: an assertion, `\Q…\E`, a class (`\d`, `\pL`) or an escaped character.
    private mutating func parseBackslash() throws(RE2SyntaxError) -> RE2Node? {
        let s = i
        if s + 1 < p.count {
            switch p[s + 1] {
            case "A":
                i += 2
                return .assertion(.beginText)
            case "z":
                i += 2
                return .assertion(.endText)
            case "b":
                i += 2
                return .assertion(.wordBoundary)
            case "B":
                i += 2
                return .assertion(.notWordBoundary)
            case "C":
                throw RE2SyntaxError(.invalidEscape, fragment(s, s + 2))
            case "Q":
                var t = s + 2
                var items: [RE2Node] = []
                while t < p.count {
                    if p[t] == "\\", t + 1 < p.count, p[t + 1] == "E" {
                        t += 2
                        break
                    }
                    items.append(literal(p[t].value))
                    t += 1
                }
                i = t
                return items.isEmpty ? nil : Self.concatenation(items)
            case "p", "P":
                let (ranges, categories) = try parseUnicodeClass()
                return .charClass(RE2CharClass(ranges: ranges, categories: categories, fold: flags.foldCase))
            default:
                if let group = perlClass(p[s + 1]) {
                    i += 2
                    return .charClass(RE2CharClass(ranges: group, fold: flags.foldCase))
                }
            }
        }
        let c = try parseEscape()
        return literal(c)
    }

    /// One escaped character (`\.`, `\n`, `\x41`, `\x{263a}`, `\123`) at `i`.
    private mutating func parseEscape() throws(RE2SyntaxError) -> UInt32 {
        let s = i
        var t = s + 1
        guard t < p.count else { throw RE2SyntaxError(.trailingBackslash, "") }
        let c = p[t]
        t += 1
        var octal = false
        switch c {
        case "1", "2", "3", "4", "5", "6", "7":
            // A single non-zero digit would be a backreference: not supported.
            octal = t < p.count && Self.isOctal(p[t])
        case "0":
            octal = true
        case "x":
            guard t < p.count else { break }
            let d = p[t]
            t += 1
            if d == "{" {
                var digits = 0
                var r: UInt32 = 0
                while true {
                    guard t < p.count else { throw RE2SyntaxError(.invalidEscape, fragment(s, t)) }
                    let h = p[t]
                    t += 1
                    if h == "}" { break }
                    guard let v = Self.hexValue(h) else { throw RE2SyntaxError(.invalidEscape, fragment(s, t)) }
                    r = r * 16 + v
                    if r > RE2CharClass.maxScalar { throw RE2SyntaxError(.invalidEscape, fragment(s, t)) }
                    digits += 1
                }
                if digits == 0 { break }
                i = t
                return r
            }
            // Two hex digits; Go reads the second character before checking either.
            guard t < p.count else { break }
            let e = p[t]
            t += 1
            guard let x = Self.hexValue(d), let y = Self.hexValue(e) else { break }
            i = t
            return x * 16 + y
        case "a": i = t; return 0x07
        case "f": i = t; return 0x0C
        case "n": i = t; return 0x0A
        case "r": i = t; return 0x0D
        case "t": i = t; return 0x09
        case "v": i = t; return 0x0B
        default:
            if c.value < 0x80, !Self.isAlnum(c) {  // escaped punctuation is itself
                i = t
                return c.value
            }
        }
        if octal {
            var r = c.value - 0x30
            var n = 1
            while n < 3, t < p.count, Self.isOctal(p[t]) {
                r = r * 8 + (p[t].value - 0x30)
                t += 1
                n += 1
            }
            i = t
            return r
        }
        throw RE2SyntaxError(.invalidEscape, fragment(s, t))
    }

    /// `\pL`, `\p{Greek}`, `\PL`, `\p{^L}` at `i`: scalar ranges (Any, ASCII) or a general-category item.
    /// Scripts (`\p{Greek}`) are not supported: Go's error for an unknown name.
    private mutating func parseUnicodeClass() throws(RE2SyntaxError) -> ([UInt32], [RE2CharClass.CategoryItem]) {
        let s = i
        var negated = p[s + 1] == "P"
        var t = s + 2
        let sequence: String
        var name: String
        if t < p.count, p[t] == "{" {
            guard let end = p[s...].firstIndex(of: "}") else {
                throw RE2SyntaxError(.invalidCharRange, fragment(s, p.count))
            }
            sequence = fragment(s, end + 1)
            name = fragment(s + 3, end)
            t = end + 1
        } else {
            if t < p.count { t += 1 }
            sequence = fragment(s, t)
            name = fragment(s + 2, t)
        }
        if name.unicodeScalars.first == "^" {
            negated.toggle()
            name = String(name.unicodeScalars.dropFirst())
        }
        i = t
        switch Self.canonicalName(name) {
        case "Any":
            return (negated ? [] : [0, RE2CharClass.maxScalar], [])
        case "Ascii":
            return (negated ? RE2CharClass.complement([0, 0x7F]) : [0, 0x7F], [])
        case "Assigned":
            return ([], [.init(mask: 1 << 29, negated: !negated)])
        case let canonical:
            guard let mask = RE2Categories.mask(named: canonical) else {
                throw RE2SyntaxError(.invalidCharRange, sequence)
            }
            return ([], [.init(mask: mask, negated: negated)])
        }
    }

    /// Go's `canonicalName`: first letter upper case, the rest lower case, without `_`, `-` and spaces.
    private static func canonicalName(_ name: String) -> String {
        var out = String.UnicodeScalarView()
        for c in name.unicodeScalars where c != "_" && c != "-" && c != " " {
            var v = c.value
            if out.isEmpty {
                if v >= 0x61 && v <= 0x7A { v -= 0x20 }
            } else if v >= 0x41 && v <= 0x5A {
                v += 0x20
            }
            out.append(Unicode.Scalar(v) ?? c)
        }
        return String(out)
    }

    // MARK: Classes

    /// `[...]` at `i`.
    private mutating func parseClass() throws(RE2SyntaxError) -> RE2Node {
        let start = i
        var t = start + 1
        var negated = false
        if t < p.count, p[t] == "^" {
            negated = true
            t += 1
        }
        var ranges: [UInt32] = []
        var categories: [RE2CharClass.CategoryItem] = []
        var first = true  // `]` is a literal as the first character
        while t >= p.count || p[t] != "]" || first {
            first = false
            // POSIX [:alpha:] and [:^alpha:].
            if t + 2 < p.count, p[t] == "[", p[t + 1] == ":", let close = namedClassEnd(from: t + 2) {
                let name = fragment(t, close)
                guard let group = Self.posixClass(name) else { throw RE2SyntaxError(.invalidCharRange, name) }
                ranges += groupRanges(group.ranges, negated: group.negated)
                t = close
                continue
            }
            if t + 1 < p.count, p[t] == "\\", p[t + 1] == "p" || p[t + 1] == "P" {
                i = t
                let (r, c) = try parseUnicodeClass()
                ranges += r
                categories += c
                t = i
                continue
            }
            if t + 1 < p.count, p[t] == "\\", let group = perlClassParts(p[t + 1]) {
                ranges += groupRanges(group.ranges, negated: group.negated)
                t += 2
                continue
            }
            // One character or a range.
            let rangeStart = t
            let lo = try parseClassChar(&t, classStart: start)
            var hi = lo
            if t + 1 < p.count, p[t] == "-", p[t + 1] != "]" {
                t += 1
                hi = try parseClassChar(&t, classStart: start)
                if hi < lo { throw RE2SyntaxError(.invalidCharRange, fragment(rangeStart, t)) }
            }
            ranges += [lo, hi]
        }
        i = t + 1
        return .charClass(
            RE2CharClass(ranges: ranges, categories: categories, negated: negated, fold: flags.foldCase))
    }

    private func namedClassEnd(from start: Int) -> Int? {
        var t = start
        while t + 1 < p.count {
            if p[t] == ":", p[t + 1] == "]" { return t + 2 }
            t += 1
        }
        return nil
    }

    private mutating func parseClassChar(_ t: inout Int, classStart: Int) throws(RE2SyntaxError) -> UInt32 {
        guard t < p.count else { throw RE2SyntaxError(.missingBracket, fragment(classStart, p.count)) }
        if p[t] == "\\" {
            i = t
            let c = try parseEscape()
            t = i
            return c
        }
        t += 1
        return p[t - 1].value
    }

    /// A Perl or POSIX group's ranges, case-folded first and then negated (Go's `appendGroup`).
    private func groupRanges(_ ranges: [UInt32], negated: Bool) -> [UInt32] {
        let folded = flags.foldCase ? RE2CharClass.foldClosed(ranges) : ranges
        return negated ? RE2CharClass.complement(RE2CharClass.normalized(folded)) : folded
    }

    private func perlClass(_ c: Unicode.Scalar) -> [UInt32]? {
        guard let group = perlClassParts(c) else { return nil }
        return groupRanges(group.ranges, negated: group.negated)
    }

    /// `\d \s \w` and their negations: ASCII only, as RE2.
    private func perlClassParts(_ c: Unicode.Scalar) -> (ranges: [UInt32], negated: Bool)? {
        switch c {
        case "d": ([0x30, 0x39], false)
        case "D": ([0x30, 0x39], true)
        case "s": ([0x09, 0x0A, 0x0C, 0x0D, 0x20, 0x20], false)
        case "S": ([0x09, 0x0A, 0x0C, 0x0D, 0x20, 0x20], true)
        case "w": ([0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A], false)
        case "W": ([0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A], true)
        default: nil
        }
    }

    private static func posixClass(_ name: String) -> (ranges: [UInt32], negated: Bool)? {
        var scalars = Array(name.unicodeScalars)  // "[:alpha:]" or "[:^alpha:]"
        var negated = false
        if scalars.count > 2, scalars[2] == "^" {
            negated = true
            scalars.remove(at: 2)
        }
        var plain = String.UnicodeScalarView()
        plain.append(contentsOf: scalars)
        let ranges: [UInt32]
        switch String(plain) {
        case "[:alnum:]": ranges = [0x30, 0x39, 0x41, 0x5A, 0x61, 0x7A]
        case "[:alpha:]": ranges = [0x41, 0x5A, 0x61, 0x7A]
        case "[:ascii:]": ranges = [0x00, 0x7F]
        case "[:blank:]": ranges = [0x09, 0x09, 0x20, 0x20]
        case "[:cntrl:]": ranges = [0x00, 0x1F, 0x7F, 0x7F]
        case "[:digit:]": ranges = [0x30, 0x39]
        case "[:graph:]": ranges = [0x21, 0x7E]
        case "[:lower:]": ranges = [0x61, 0x7A]
        case "[:print:]": ranges = [0x20, 0x7E]
        case "[:punct:]": ranges = [0x21, 0x2F, 0x3A, 0x40, 0x5B, 0x60, 0x7B, 0x7E]
        case "[:space:]": ranges = [0x09, 0x0D, 0x20, 0x20]
        case "[:upper:]": ranges = [0x41, 0x5A]
        case "[:word:]": ranges = [0x30, 0x39, 0x41, 0x5A, 0x5F, 0x5F, 0x61, 0x7A]
        case "[:xdigit:]": ranges = [0x30, 0x39, 0x41, 0x46, 0x61, 0x66]
        default: return nil
        }
        return (ranges, negated)
    }

    // MARK: Helpers

    /// A literal, as a small case-folded class under `(?i)` when the character has other cases.
    private func literal(_ c: UInt32) -> RE2Node {
        if flags.foldCase {
            var hasVariants = false
            RE2CaseFolding.forEachVariant(of: c) { _ in hasVariants = true }
            if hasVariants { return .charClass(RE2CharClass(ranges: [c, c], fold: true)) }
        }
        return .literal(c)
    }

    private func literal(_ c: Unicode.Scalar) -> RE2Node { literal(c.value) }

    private func fragment(_ from: Int, _ to: Int) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: p[from..<min(to, p.count)])
        return String(view)
    }

    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x39 }
    private static func isOctal(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x37 }

    private static func isAlnum(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
    }

    private static func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        let v = c.value
        if v >= 0x30 && v <= 0x39 { return v - 0x30 }
        if v >= 0x61 && v <= 0x66 { return v - 0x61 + 10 }
        if v >= 0x41 && v <= 0x46 { return v - 0x41 + 10 }
        return nil
    }
}
