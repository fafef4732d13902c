/// An ordered list of header fields as they appeared on the wire.
///
/// Names keep their original spelling; lookups are ASCII case-insensitive (RFC 9110 §5.1).
/// Values are stored as received, without surrounding whitespace.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public typealias Element = (name: String, value: String)

    public private(set) var fields: [Field]

    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init() { fields = [] }

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> AnyIterator<Element> {
        var it = fields.makeIterator()
        return AnyIterator { it.next().map { ($0.name, $0.value) } }
    }

    /// Makes room for `count` fields in all, so that adding them does not grow the list step by step.
    public mutating func reserveCapacity(_ count: Int) {
        fields.reserveCapacity(count)
    }

    public mutating func add(name: String, value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every field called `name` with one field, appended at the end.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    public mutating func remove(name: String) {
        fields.removeAll { $0.name.equalsIgnoringASCIICase(name) }
    }

    public mutating func removeAll(where predicate: (Field) -> Bool) {
        fields.removeAll(where: predicate)
    }

    /// All values of the fields called `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.lazy.filter { $0.name.equalsIgnoringASCIICase(name) }.map(\.value)
    }

    /// The first value of the field called `name`.
    public func first(_ name: String) -> String? {
        fields.first { $0.name.equalsIgnoringASCIICase(name) }?.value
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { $0.name.equalsIgnoringASCIICase(name) }
    }

    /// Comma-separated list elements of every field called `name`, trimmed, lowercased
    /// (for tokens such as `Connection` and `Transfer-Encoding`).
    public func tokens(_ name: String) -> [String] {
        guard contains(name) else { return [] }    // the usual case: nothing to build
        return values(name).flatMap { $0.split(separator: ",") }
            .map { $0.withoutSurroundingSpaces().lowercased() }
            .filter { !$0.isEmpty }
    }
}

extension HTTPHeaders {
    /// Whether a field called `name` lists `token` (an ASCII token such as `close` or `chunked`) among its
    /// comma-separated elements, compared ASCII case-insensitively with spaces and tabs around elements ignored.
    /// The same answer as `tokens(name).contains(token)` for ASCII elements, without building any list: the
    /// connection-management checks run on every request and response.
    public func containsToken(_ name: String, _ token: String) -> Bool {
        for field in fields where field.name.equalsIgnoringASCIICase(name) {
            let value = field.value.utf8.span
            let wanted = token.utf8.span
            var start = 0
            while start <= value.count {
                var end = start
                while end < value.count, value[end] != UInt8(ascii: ",") { end += 1 }
                var lo = start, hi = end
                while lo < hi, value[lo] == UInt8(ascii: " ") || value[lo] == UInt8(ascii: "\t") { lo += 1 }
                while hi > lo, value[hi - 1] == UInt8(ascii: " ") || value[hi - 1] == UInt8(ascii: "\t") { hi -= 1 }
                if hi - lo == wanted.count {
                    var equal = true
                    for i in 0..<wanted.count where !equalIgnoringASCIICase(value[lo + i], wanted[i]) {
                        equal = false
                        break
                    }
                    if equal { return true }
                }
                start = end + 1
            }
        }
        return false
    }
}

extension String {
    /// ASCII case-insensitive comparison, as header names need (no Unicode folding). Runs over the UTF-8 storage
    /// directly (`Span`): header lookups call it for every field on every request.
    public func equalsIgnoringASCIICase(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }  // O(1) for native strings
        let a = utf8.span, b = other.utf8.span
        for i in a.indices where !equalIgnoringASCIICase(a[i], b[i]) {
            return false
        }
        return true
    }
}

/// Two bytes equal, or the same ASCII letter in either case (`x | 0x20` is a letter's lowercase form).
@inline(__always)
private func equalIgnoringASCIICase(_ x: UInt8, _ y: UInt8) -> Bool {
    x == y || (x | 0x20 == y | 0x20 && (x | 0x20) &- UInt8(ascii: "a") < 26)
}
