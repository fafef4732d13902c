/// A compiled Go RE2 pattern (`regexp.Compile` syntax), matched in linear time.
///
/// `matches(_:)` is Go's `MatchString`: true if the pattern matches anywhere in the text. The program is a
/// Thompson NFA run as a Pike VM over the text's Unicode scalars (Go matches UTF-8 runes; a Swift `String` holds
/// only valid scalars): every NFA state is visited at most once per input position, so time is
/// O(pattern size × text length) whatever the pattern, unlike a backtracking engine where `^(a+)+$` against a
/// long run of `a`s takes exponential time. Immutable, so one compiled value is shared by all event loops.
///
/// Supported: literals and escapes (`\.` and other punctuation, `\t \n \r \f \v \a`, `\x41`, `\x{263a}`, `\123`,
/// `\Q…\E`); `.`; classes `[abc] [^a-z] [\d\w\s] [[:alpha:]] [[:^space:]]`; `\d \D \w \W \s \S` (ASCII);
/// `\pL \p{Lu} \PN \p{^L}` for Unicode general categories and `Any`, `ASCII`, `Assigned`; `^ $ \A \z \b \B`;
/// groups `( ) (?: ) (?P<name> ) (?<name> )`; flags `i m s U` as `(?i)`, `(?i:…)`, `(?-i)`; `|`;
/// `* + ? {n} {n,} {n,m}` with lazy `?` (counts up to 1000, as Go).
/// Not supported, as in Go: backreferences, lookaround, `\C`, `\Z`, possessive `*+`. Not supported here although
/// Go has them: Unicode scripts (`\p{Greek}`), rejected with Go's unknown-name error
/// (`invalid character class range: \`\p{Greek}\``).
public struct RE2Pattern: Sendable {
    public let pattern: String
    private let program: RE2Program

    public init(_ pattern: String) throws(RE2SyntaxError) {
        var parser = RE2Parser(pattern)
        let tree = try parser.parse()
        program = try RE2Program(tree, pattern: pattern)
        self.pattern = pattern
    }

    /// True if the pattern matches any part of `text` (unanchored, like Go's `MatchString`).
    public func matches(_ text: String) -> Bool { program.matches(text) }

    /// Number of NFA instructions (for tests of the size limit).
    var programSize: Int { program.instructions.count }
}

enum RE2Instruction: Sendable {
    case scalar(UInt32)
    case charClass(Int)
    case anyChar
    case anyCharNotNL
    case assertion(RE2Assertion)
    case split(Int, Int)
    case jump(Int)
    case match
}

struct RE2Program: Sendable {
    /// Go's limit on compiled size (`regexp/syntax` maxSize: 128 MiB of 40-byte instructions).
    static let maxInstructions = (128 << 20) / 40

    private(set) var instructions: [RE2Instruction] = []
    private(set) var classes: [RE2CharClass] = []
    /// Every match must start at the beginning of the text (`^…` without `(?m)`, `\A…`).
    let anchoredAtStart: Bool
    private var overflow = false

    init(_ tree: RE2Node, pattern: String) throws(RE2SyntaxError) {
        anchoredAtStart = Self.isAnchoredAtStart(tree)
        emit(tree)
        instructions.append(.match)
        if overflow { throw RE2SyntaxError(.tooLarge, pattern) }
    }

    private static func isAnchoredAtStart(_ node: RE2Node) -> Bool {
        switch node {
        case .assertion(.beginText): true
        case .concat(let items): items.first.map(isAnchoredAtStart) ?? false
        case .alternate(let items): items.allSatisfy(isAnchoredAtStart)
        default: false
        }
    }

    // MARK: Compilation (Thompson construction)

    private mutating func append(_ instruction: RE2Instruction) {
        if instructions.count >= Self.maxInstructions {
            overflow = true
            return
        }
        instructions.append(instruction)
    }

    private mutating func emit(_ node: RE2Node) {
        if overflow { return }
        switch node {
        case .empty:
            break
        case .literal(let c):
            append(.scalar(c))
        case .charClass(let c):
            classes.append(c)
            append(.charClass(classes.count - 1))
        case .anyChar:
            append(.anyChar)
        case .anyCharNotNL:
            append(.anyCharNotNL)
        case .assertion(let a):
            append(.assertion(a))
        case .concat(let items):
            for item in items { emit(item) }
        case .alternate(let items):
            var exits: [Int] = []
            for (k, item) in items.enumerated() {
                if k == items.count - 1 {
                    emit(item)
                    break
                }
                let split = instructions.count
                append(.split(split + 1, -1))
                emit(item)
                exits.append(instructions.count)
                append(.jump(-1))
                patch(split, .split(split + 1, instructions.count))
            }
            for exit in exits { patch(exit, .jump(instructions.count)) }
        case .repetition(let sub, let min, let max, _):
            if max == -1 {
                if min == 0 {
                    emitStar(sub)
                } else {
                    for _ in 0..<(min - 1) { emit(sub) }
                    let loop = instructions.count  // x+: x, then split back
                    emit(sub)
                    append(.split(loop, instructions.count + 1))
                }
                return
            }
            for _ in 0..<min { emit(sub) }
            var optionals: [Int] = []
            for _ in 0..<(max - min) {  // x{n,m} = x…x(x(x)?)?: every optional part may skip to the end
                optionals.append(instructions.count)
                append(.split(instructions.count + 1, -1))
                emit(sub)
            }
            for split in optionals { patch(split, .split(split + 1, instructions.count)) }
        }
    }

    private mutating func emitStar(_ sub: RE2Node) {
        let loop = instructions.count
        append(.split(loop + 1, -1))
        emit(sub)
        append(.jump(loop))
        patch(loop, .split(loop + 1, instructions.count))
    }

    private mutating func patch(_ index: Int, _ instruction: RE2Instruction) {
        guard index < instructions.count else { return }  // only after an overflow
        instructions[index] = instruction
    }

    // MARK: Matching (Pike VM, no captures)

    func matches(_ text: String) -> Bool {
        var vm = RE2Machine(program: self)
        return vm.run(text)
    }

    @inline(__always)
    func step(_ instruction: RE2Instruction, _ c: UInt32) -> Bool {
        switch instruction {
        case .scalar(let s): s == c
        case .charClass(let k): classes[k].matches(c)
        case .anyChar: true
        case .anyCharNotNL: c != 0x0A
        default: false
        }
    }
}

/// Scratch state for one search: the current thread list, the threads for the next position and a per-position
/// visit mark for each instruction (which bounds the work per position by the program size).
private struct RE2Machine {
    static let none = UInt32.max

    let program: RE2Program
    var current: [Int] = []
    var next: [Int] = []
    var stack: [Int] = []
    var mark: [UInt32]
    var generation: UInt32 = 0

    init(program: RE2Program) {
        self.program = program
        mark = Array(repeating: 0, count: program.instructions.count)
        current.reserveCapacity(program.instructions.count)
        next.reserveCapacity(program.instructions.count)
    }

    mutating func run(_ text: String) -> Bool {
        var scalars = text.unicodeScalars.makeIterator()
        var previous = Self.none
        var upcoming = scalars.next()?.value ?? Self.none
        var atStart = true
        while true {
            generation &+= 1
            current.removeAll(keepingCapacity: true)
            for pc in next where addThread(pc, previous, upcoming) { return true }
            if atStart || !program.anchoredAtStart {
                if addThread(0, previous, upcoming) { return true }
            }
            guard upcoming != Self.none else { return false }
            next.removeAll(keepingCapacity: true)
            for pc in current where program.step(program.instructions[pc], upcoming) { next.append(pc + 1) }
            if next.isEmpty, program.anchoredAtStart { return false }
            previous = upcoming
            upcoming = scalars.next()?.value ?? Self.none
            atStart = false
        }
    }

    /// Follows jumps, splits and assertions from `pc` at the current position; collects the instructions that
    /// consume a scalar into `current`. True if the match instruction is reached.
    private mutating func addThread(_ pc: Int, _ previous: UInt32, _ upcoming: UInt32) -> Bool {
        stack.append(pc)
        while let pc = stack.popLast() {
            if mark[pc] == generation { continue }
            mark[pc] = generation
            switch program.instructions[pc] {
            case .match:
                stack.removeAll(keepingCapacity: true)
                return true
            case .jump(let target):
                stack.append(target)
            case .split(let a, let b):
                stack.append(b)
                stack.append(a)
            case .assertion(let kind):
                if Self.holds(kind, previous, upcoming) { stack.append(pc + 1) }
            default:
                current.append(pc)
            }
        }
        return false
    }

    private static func holds(_ kind: RE2Assertion, _ previous: UInt32, _ upcoming: UInt32) -> Bool {
        switch kind {
        case .beginText: previous == none
        case .endText: upcoming == none
        case .beginLine: previous == none || previous == 0x0A
        case .endLine: upcoming == none || upcoming == 0x0A
        case .wordBoundary: isWord(previous) != isWord(upcoming)
        case .notWordBoundary: isWord(previous) == isWord(upcoming)
        }
    }

    /// ASCII word characters `[0-9A-Za-z_]`, as RE2's `\b`.
    private static func isWord(_ c: UInt32) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
    }
}
