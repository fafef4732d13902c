@testable import ProxyCore

/// The RE2 pattern parser and matcher on arbitrary input.
///
/// Input: a length byte n, n bytes of pattern, then the text (both decoded as UTF-8, as flag values and paths are).
/// A pattern either compiles or throws an `RE2SyntaxError` whose text quotes Go's wording (`error parsing regexp:`);
/// a compiled pattern matches the text without crashing or taking more than linear time (libFuzzer's timeout).
enum RE2Fuzz {
    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let length = Int(input.byte())
        let pattern = String(decoding: input.take(length), as: UTF8.self)
        let text = String(decoding: input.rest(), as: UTF8.self)
        let compiled: RE2Pattern
        do {
            compiled = try RE2Pattern(pattern)
        } catch {
            require(error.description.hasPrefix("error parsing regexp: "), "unexpected error text: \(error)")
            return
        }
        let matched = compiled.matches(text)
        // Unanchored matching: a match in the text is a match in any text that contains it... only for patterns
        // without assertions, which cannot be told apart here, so check the cheap certain case: the empty pattern.
        if pattern.isEmpty { require(matched, "the empty pattern did not match \(text.debugDescription)") }
        _ = compiled.matches("")
    }
}

/// `RE2Pattern` against an independent reference on generated patterns and short texts.
///
/// The input is read as a syntax tree (literals, `.`, classes, `^ $ \b \B`, concatenation, alternation, groups,
/// `* + ?` greedy and lazy, `{n} {n,} {n,m}`, optionally under `(?i)` or `(?s)`), printed as a Go pattern and
/// compiled with `RE2Pattern`; the reference decides the match straight from the tree, by computing for each start
/// position the set of positions where the tree can end (no backtracking, no NFA), and the two must agree on texts
/// over a small alphabet that includes a newline and both letter cases.
enum RE2ReferenceFuzz {
    indirect enum Node {
        case literal(Character)
        case any
        case charClass(Set<Character>, negated: Bool)
        case beginText, endText, wordBoundary, notWordBoundary
        case concat([Node])
        case alternate([Node])
        case group(Node, capturing: Bool)
        case repeatRange(Node, min: Int, max: Int?, lazy: Bool)
    }

    static let alphabet: [Character] = ["a", "b", "A", "/", ".", "-", "\n", "1"]

    struct Flags {
        var caseInsensitive = false
        var dotAll = false
    }

    static func run(_ data: [UInt8]) {
        var input = FuzzInput(data)
        let flagByte = input.byte()
        let flags = Flags(caseInsensitive: flagByte & 1 != 0, dotAll: flagByte & 2 != 0)
        let tree = node(&input, depth: 0, budget: 1000)
        var pattern = (flags.caseInsensitive ? "(?i)" : "") + (flags.dotAll ? "(?s)" : "")
        render(tree, into: &pattern)
        let compiled: RE2Pattern
        do {
            compiled = try RE2Pattern(pattern)
        } catch {
            return require(false, "generated pattern \(pattern.debugDescription) rejected: \(error)")
        }
        // Texts: each remaining group of bytes is one text of up to 8 characters.
        var texts: [[Character]] = [[]]
        while !input.isEmpty {
            let length = Int(input.byte() % 9)
            texts.append(input.take(length).map { alphabet[Int($0) % alphabet.count] })
        }
        for text in texts.prefix(8) {
            let expected = referenceMatches(tree, text, flags)
            let actual = compiled.matches(String(text))
            require(actual == expected,
                    "pattern \(pattern.debugDescription) on \(String(text).debugDescription): \(actual), reference \(expected)")
        }
    }

    // MARK: Generation

    /// `budget`: Go's limit on nested counted repetition (`repeatIsValid`: the product of the counts, each the
    /// maximum or, unbounded, the minimum, stays at most 1000), so that every generated pattern is valid.
    static func node(_ input: inout FuzzInput, depth: Int, budget: Int) -> Node {
        let choice = input.byte()
        let leafOnly = depth >= 4 || input.isEmpty
        switch leafOnly ? choice % 8 : choice % 14 {
        case 0, 1, 2: return .literal(alphabet[Int(input.byte()) % alphabet.count])
        case 3: return .any
        case 4:
            let bits = input.byte()
            let members = Set(alphabet.indices.filter { bits & (1 << $0) != 0 }.map { alphabet[$0] })
            return .charClass(members.isEmpty ? ["a"] : members, negated: choice & 0x80 != 0)
        case 5: return choice & 0x80 == 0 ? .beginText : .endText
        case 6: return choice & 0x80 == 0 ? .wordBoundary : .notWordBoundary
        case 7: return .literal(alphabet[Int(choice >> 4) % alphabet.count])
        case 8, 9: return .concat((0..<(2 + Int(choice >> 6))).map { _ in node(&input, depth: depth + 1, budget: budget) })
        case 10: return .alternate((0..<(2 + Int(choice >> 6))).map { _ in node(&input, depth: depth + 1, budget: budget) })
        case 11: return .group(node(&input, depth: depth + 1, budget: budget), capturing: choice & 0x80 != 0)
        default:
            let shape = input.byte()
            let lazy = shape & 0x80 != 0
            var kind = shape % 6
            let low = Int(shape >> 3 & 3)
            let count = kind == 5 ? low + Int(shape >> 5 & 3) : low
            if kind >= 3, count > budget { kind = 0 }
            let sub = node(&input, depth: depth + 1, budget: kind >= 3 && count > 0 ? budget / count : budget)
            switch kind {
            case 0: return .repeatRange(sub, min: 0, max: nil, lazy: lazy)  // *
            case 1: return .repeatRange(sub, min: 1, max: nil, lazy: lazy)  // +
            case 2: return .repeatRange(sub, min: 0, max: 1, lazy: lazy)  // ?
            case 3: return .repeatRange(sub, min: low, max: low, lazy: lazy)
            case 4: return .repeatRange(sub, min: low, max: nil, lazy: lazy)
            default: return .repeatRange(sub, min: low, max: count, lazy: lazy)
            }
        }
    }

    static func escaped(_ c: Character) -> String {
        switch c {
        case "\n": #"\n"#
        case "a"..."z", "A"..."Z", "0"..."9": String(c)
        default: "\\" + String(c)
        }
    }

    /// Prints `node` so that it parses back to the same tree: every operand of a repetition, alternation or
    /// concatenation is wrapped in `(?:…)` where precedence would otherwise change the meaning.
    static func render(_ node: Node, into out: inout String) {
        switch node {
        case .literal(let c): out += escaped(c)
        case .any: out += "."
        case .charClass(let members, let negated):
            out += negated ? "[^" : "["
            for c in alphabet where members.contains(c) { out += escaped(c) }
            out += "]"
        case .beginText: out += "^"
        case .endText: out += "$"
        case .wordBoundary: out += #"\b"#
        case .notWordBoundary: out += #"\B"#
        case .concat(let items):
            for item in items {
                if case .alternate = item { out += "(?:"; render(item, into: &out); out += ")" } else { render(item, into: &out) }
            }
        case .alternate(let items):
            for (i, item) in items.enumerated() {
                if i > 0 { out += "|" }
                render(item, into: &out)
            }
        case .group(let sub, let capturing):
            out += capturing ? "(" : "(?:"
            render(sub, into: &out)
            out += ")"
        case .repeatRange(let sub, let min, let max, let lazy):
            out += "(?:"
            render(sub, into: &out)
            out += ")"
            switch (min, max) {
            case (0, nil): out += "*"
            case (1, nil): out += "+"
            case (0, 1?): out += "?"
            case (let n, nil): out += "{\(n),}"
            case (let n, let m?) where n == m: out += "{\(n)}"
            case (let n, let m?): out += "{\(n),\(m)}"
            }
            if lazy { out += "?" }
        }
    }

    // MARK: Reference

    static func referenceMatches(_ tree: Node, _ text: [Character], _ flags: Flags) -> Bool {
        var reference = Reference(text: text, flags: flags)
        return (0...text.count).contains { !reference.ends(tree, from: $0).isEmpty }
    }

    /// Computes, for a node and a start position, every position where the node can end. Results are memoized per
    /// node (named by its path from the root) and start, which keeps nested repetitions polynomial.
    struct Reference {
        let text: [Character]
        let flags: Flags
        private var memo: [String: Set<Int>] = [:]

        init(text: [Character], flags: Flags) {
            self.text = text
            self.flags = flags
        }

        static func isWord(_ c: Character) -> Bool {
            c.isASCII && (c.isLetter || c.isNumber || c == "_")
        }

        func same(_ a: Character, _ b: Character) -> Bool {
            flags.caseInsensitive ? a.lowercased() == b.lowercased() : a == b
        }

        mutating func ends(_ node: Node, from start: Int, path: String = "") -> Set<Int> {
            let key = path + "@" + String(start)
            if let known = memo[key] { return known }
            let result = compute(node, from: start, path: path)
            memo[key] = result
            return result
        }

        private mutating func compute(_ node: Node, from start: Int, path: String) -> Set<Int> {
            let atEnd = start == text.count
            switch node {
            case .literal(let c):
                return !atEnd && same(text[start], c) ? [start + 1] : []
            case .any:
                return !atEnd && (flags.dotAll || text[start] != "\n") ? [start + 1] : []
            case .charClass(let members, let negated):
                guard !atEnd else { return [] }
                let inClass = members.contains { same($0, text[start]) }
                return inClass != negated ? [start + 1] : []
            case .beginText:
                return start == 0 ? [start] : []
            case .endText:
                return atEnd ? [start] : []
            case .wordBoundary, .notWordBoundary:
                let before = start > 0 && Self.isWord(text[start - 1])
                let after = !atEnd && Self.isWord(text[start])
                let boundary = before != after
                if case .wordBoundary = node { return boundary ? [start] : [] }
                return boundary ? [] : [start]
            case .concat(let items):
                var positions: Set<Int> = [start]
                for (i, item) in items.enumerated() {
                    var next: Set<Int> = []
                    for p in positions { next.formUnion(ends(item, from: p, path: path + "." + String(i))) }
                    positions = next
                    if positions.isEmpty { break }
                }
                return positions
            case .alternate(let items):
                var result: Set<Int> = []
                for (i, item) in items.enumerated() { result.formUnion(ends(item, from: start, path: path + "|" + String(i))) }
                return result
            case .group(let sub, _):
                return ends(sub, from: start, path: path + "(")
            case .repeatRange(let sub, let min, let max, _):
                let subPath = path + "*"
                func step(_ positions: Set<Int>) -> Set<Int> {
                    var next: Set<Int> = []
                    for p in positions { next.formUnion(ends(sub, from: p, path: subPath)) }
                    return next
                }
                var positions: Set<Int> = [start]
                for _ in 0..<min { positions = step(positions) }
                var result = positions
                var frontier = positions
                var count = min
                while !frontier.isEmpty, max.map({ count < $0 }) ?? true {
                    let next = step(frontier)
                    frontier = next.subtracting(result)
                    result.formUnion(next)
                    count += 1
                }
                return result
            }
        }
    }
}
