/// A compiled character class: sorted, merged scalar ranges plus Unicode general-category items (`\pL`, `\P{Nd}`),
/// optionally negated as a whole (`[^…]`) and optionally case-insensitive.
///
/// Case folding: when `fold` is set, the ranges were already closed under simple case mappings at compile time
/// (for classes of up to `RE2CharClass.foldExpansionLimit` scalars), and at match time the input scalar's case
/// variants are tried too. That gives Go's `unicode.SimpleFold` answers except for the rare one-way folds
/// (Kelvin sign, long s) inside very large ranges.
struct RE2CharClass: Sendable, Equatable {
    /// Flattened `lo, hi` pairs, sorted by `lo`, non-overlapping and non-adjacent.
    private(set) var ranges: [UInt32]
    /// `\p`/`\P` items: a bit set of general categories and whether the item is negated.
    private(set) var categories: [CategoryItem]
    let negated: Bool
    let fold: Bool
    /// Bit map of the ASCII scalars in `ranges`, for a fast path.
    private let ascii: (UInt64, UInt64)

    struct CategoryItem: Sendable, Equatable {
        var mask: UInt32
        var negated: Bool
    }

    static let maxScalar: UInt32 = 0x10FFFF
    static let foldExpansionLimit = 4096

    init(ranges: [UInt32], categories: [CategoryItem] = [], negated: Bool = false, fold: Bool = false) {
        var merged = Self.normalized(ranges)
        if fold { merged = Self.foldClosed(merged) }
        self.ranges = merged
        self.categories = categories
        self.negated = negated
        self.fold = fold
        var lo: UInt64 = 0
        var hi: UInt64 = 0
        var i = 0
        while i < merged.count, merged[i] < 128 {
            var c = merged[i]
            while c <= min(merged[i + 1], 127) {
                if c < 64 { lo |= 1 << UInt64(c) } else { hi |= 1 << UInt64(c - 64) }
                c += 1
            }
            i += 2
        }
        ascii = (lo, hi)
    }

    static func == (a: RE2CharClass, b: RE2CharClass) -> Bool {
        a.ranges == b.ranges && a.categories == b.categories && a.negated == b.negated && a.fold == b.fold
    }

    func matches(_ c: UInt32) -> Bool {
        var hit = inRanges(c)
        if !hit, fold { hit = RE2CaseFolding.anyVariant(of: c, where: inRanges) }
        if !hit {
            for item in categories {
                var inItem = RE2Categories.contains(item.mask, c)
                if !inItem, fold { inItem = RE2CaseFolding.anyVariant(of: c) { RE2Categories.contains(item.mask, $0) } }
                if inItem != item.negated {
                    hit = true
                    break
                }
            }
        }
        return hit != negated
    }

    private func inRanges(_ c: UInt32) -> Bool {
        if c < 64 { return ascii.0 & (1 << UInt64(c)) != 0 }
        if c < 128 { return ascii.1 & (1 << UInt64(c - 64)) != 0 }
        var lo = 0
        var hi = ranges.count / 2
        while lo < hi {
            let mid = (lo + hi) / 2
            if c < ranges[2 * mid] {
                hi = mid
            } else if c > ranges[2 * mid + 1] {
                lo = mid + 1
            } else {
                return true
            }
        }
        return false
    }

    /// Sorts and merges overlapping or adjacent pairs.
    static func normalized(_ r: [UInt32]) -> [UInt32] {
        guard r.count > 2 else { return r }
        var pairs: [(UInt32, UInt32)] = []
        pairs.reserveCapacity(r.count / 2)
        var i = 0
        while i < r.count {
            pairs.append((r[i], r[i + 1]))
            i += 2
        }
        pairs.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 > $1.1) }
        var out: [UInt32] = [pairs[0].0, pairs[0].1]
        for (lo, hi) in pairs.dropFirst() {
            if lo <= out[out.count - 1] &+ 1 {
                if hi > out[out.count - 1] { out[out.count - 1] = hi }
            } else {
                out.append(lo)
                out.append(hi)
            }
        }
        return out
    }

    /// The complement of normalized ranges over all scalars.
    static func complement(_ r: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        var next: UInt32 = 0
        var i = 0
        while i < r.count {
            if r[i] > next {
                out.append(next)
                out.append(r[i] - 1)
            }
            if r[i + 1] >= maxScalar { return out }
            next = r[i + 1] + 1
            i += 2
        }
        out.append(next)
        out.append(maxScalar)
        return out
    }

    /// Adds the simple case variants of every scalar when the class is small enough to enumerate.
    static func foldClosed(_ r: [UInt32]) -> [UInt32] {
        var size = 0
        var i = 0
        while i < r.count {
            size += Int(r[i + 1] - r[i]) + 1
            if size > foldExpansionLimit { return r }
            i += 2
        }
        var out = r
        i = 0
        while i < r.count {
            for c in r[i]...r[i + 1] {
                RE2CaseFolding.forEachVariant(of: c) { v in
                    out.append(v)
                    out.append(v)
                }
            }
            i += 2
        }
        return normalized(out)
    }
}

/// Simple case folding from the standard library's Unicode properties (no tables of our own).
enum RE2CaseFolding {
    /// The single-scalar lower, upper and title mappings of `c` (and, for ASCII letters, the other case).
    @inline(__always)
    static func anyVariant(of c: UInt32, where test: (UInt32) -> Bool) -> Bool {
        if c < 128 {
            guard let other = asciiOtherCase(c) else { return false }
            return test(other)
        }
        guard let scalar = Unicode.Scalar(c) else { return false }
        let p = scalar.properties
        func check(_ mapped: UInt32?) -> Bool {
            guard let m = mapped, m != c else { return false }
            if test(m) { return true }
            if m < 128, let other = asciiOtherCase(m) { return test(other) }
            return false
        }
        return check(single(p.lowercaseMapping)) || check(single(p.uppercaseMapping))
            || check(single(p.titlecaseMapping))
    }

    /// Calls `body` with each scalar that case-folds together with `c` (not `c` itself), following mappings
    /// a few steps so that e.g. U+212A KELVIN SIGN yields `k` and `K`.
    static func forEachVariant(of c: UInt32, _ body: (UInt32) -> Void) {
        var seen: [UInt32] = [c]
        var i = 0
        while i < seen.count, seen.count < 8 {
            let x = seen[i]
            i += 1
            var found: [UInt32?] = []
            if x < 128 {
                found.append(asciiOtherCase(x))
                // The two non-ASCII scalars whose simple folding reaches ASCII letters (Go's orbits k→K→K, s→S→ſ).
                if x == 0x4B || x == 0x6B { found.append(0x212A) }
                if x == 0x53 || x == 0x73 { found.append(0x17F) }
            } else if let scalar = Unicode.Scalar(x) {
                let p = scalar.properties
                found = [single(p.lowercaseMapping), single(p.uppercaseMapping), single(p.titlecaseMapping)]
            }
            for case let v? in found where !seen.contains(v) {
                seen.append(v)
                body(v)
            }
        }
    }

    @inline(__always)
    static func asciiOtherCase(_ c: UInt32) -> UInt32? {
        if c >= 0x41 && c <= 0x5A { return c + 0x20 }
        if c >= 0x61 && c <= 0x7A { return c - 0x20 }
        return nil
    }

    private static func single(_ s: String) -> UInt32? {
        var it = s.unicodeScalars.makeIterator()
        guard let first = it.next(), it.next() == nil else { return nil }
        return first.value
    }
}

/// Unicode general categories for `\p{…}`, as bit masks over `Unicode.GeneralCategory`.
enum RE2Categories {
    static func bit(_ c: Unicode.GeneralCategory) -> UInt32 {
        let index: UInt32 =
            switch c {
            case .uppercaseLetter: 0
            case .lowercaseLetter: 1
            case .titlecaseLetter: 2
            case .modifierLetter: 3
            case .otherLetter: 4
            case .nonspacingMark: 5
            case .spacingMark: 6
            case .enclosingMark: 7
            case .decimalNumber: 8
            case .letterNumber: 9
            case .otherNumber: 10
            case .connectorPunctuation: 11
            case .dashPunctuation: 12
            case .openPunctuation: 13
            case .closePunctuation: 14
            case .initialPunctuation: 15
            case .finalPunctuation: 16
            case .otherPunctuation: 17
            case .mathSymbol: 18
            case .currencySymbol: 19
            case .modifierSymbol: 20
            case .otherSymbol: 21
            case .spaceSeparator: 22
            case .lineSeparator: 23
            case .paragraphSeparator: 24
            case .control: 25
            case .format: 26
            case .surrogate: 27
            case .privateUse: 28
            case .unassigned: 29
            @unknown default: 29
            }
        return 1 << index
    }

    static func contains(_ mask: UInt32, _ c: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(c) else { return mask & (1 << 27) != 0 }  // surrogate code points
        return mask & bit(scalar.properties.generalCategory) != 0
    }

    /// Go's category names (`unicode.Categories`, plus `LC`); `C` is Cc|Cf|Co|Cs as in Go (no Cn).
    static func mask(named name: String) -> UInt32? {
        let names: [String] = [
            "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
            "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co",
        ]
        if let i = names.firstIndex(of: name) { return 1 << UInt32(i) }
        switch name {
        case "L": return 0b11111
        case "Lc", "LC": return 0b111
        case "M": return 0b111 << 5
        case "N": return 0b111 << 8
        case "P": return 0b1111111 << 11
        case "S": return 0b1111 << 18
        case "Z": return 0b111 << 22
        case "C": return 0b1111 << 25
        default: return nil
        }
    }
}
