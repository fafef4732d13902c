internal import Glibc

/// Small string helpers that FoundationEssentials does not provide (proxyd links no CoreFoundation or ICU).
extension Substring {
    /// Without leading and trailing spaces and tabs (RFC 9110 OWS), as a slice of the same text (no copy).
    func withoutSurroundingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (RFC 9110 OWS; Go's `textproto.TrimString` also drops CR/LF).
    func trimmingSpaces() -> String { String(Substring(self).withoutSurroundingSpaces()) }

    /// Without leading and trailing whitespace, newlines included (Unicode white space, as Foundation's
    /// `.whitespacesAndNewlines`).
    func trimmingWhitespace() -> String {
        var scalars = Substring(self).unicodeScalars
        while let c = scalars.first, c.properties.isWhitespace { scalars.removeFirst() }
        while let c = scalars.last, c.properties.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

extension StringProtocol {
    /// The first occurrence of `needle`, compared by `Character` (the standard library's own `firstRange(of:)`
    /// lives in `_StringProcessing`, which ProxyCore does not use).
    func range(ofText needle: some StringProtocol) -> Range<Index>? {
        guard let head = needle.first else { return startIndex..<startIndex }
        var from = startIndex
        while let start = self[from...].firstIndex(of: head) {
            var a = start
            var b = needle.startIndex
            while a < endIndex, b < needle.endIndex, self[a] == needle[b] {
                formIndex(after: &a)
                needle.formIndex(after: &b)
            }
            if b == needle.endIndex { return start..<a }
            if a == endIndex { return nil }
            from = index(after: start)
        }
        return nil
    }

    /// Whether `needle` occurs in the text (`contains(_: some StringProtocol)` without `_StringProcessing`).
    func containsText(_ needle: some StringProtocol) -> Bool { range(ofText: needle) != nil }
}

/// The C library's text for an errno value.
func errnoDescription(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(cString: text)
}
