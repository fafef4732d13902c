/// A table of HTTP/2 streams by stream id, for the per-connection state kept by `HTTP2Session` and
/// `HTTP2UpstreamConnection`.
///
/// A `Dictionary` hashes its key with SipHash on every access, and a response touches its stream's entry about
/// twenty times (each header field, each frame, the close): under callgrind that was 6,300 instructions per small
/// request. Stream ids are positive and the ones a client opens are odd and increasing, so `id >> 1` spreads them
/// over the slots with hardly a collision. Open addressing with linear probing; removal shifts the following
/// entries back (no tombstones), so a long-lived connection that has opened millions of streams probes as short
/// as a new one. The table grows (doubling) when three quarters full and never shrinks, like `Dictionary`.
struct StreamTable<Value> {
    /// Stream id per slot; 0 (never a stream id) marks an empty slot.
    private var ids: [Int32]
    private var values: [Value?]
    private(set) var count = 0

    init() {
        ids = []
        values = []
    }

    var isEmpty: Bool { count == 0 }

    private var mask: Int { ids.count - 1 }

    @inline(__always)
    private func home(_ id: Int32) -> Int { Int(id >> 1) & mask }

    /// The slot holding `id`, if any.
    @inline(__always)
    private func slot(of id: Int32) -> Int? {
        guard count > 0, id > 0 else { return nil }
        var i = home(id)
        while true {
            let found = ids[i]
            if found == id { return i }
            if found == 0 { return nil }
            i = (i + 1) & mask
        }
    }

    /// The stream's entry (a copy); setting nil removes it. Change an entry in place with `update`.
    subscript(id: Int32) -> Value? {
        get {
            guard let i = slot(of: id) else { return nil }
            return values[i]
        }
        set {
            if let i = slot(of: id) {
                values[i] = newValue
                if newValue == nil { removeSlot(i) }
            } else if let newValue {
                insert(id, newValue)
            }
        }
    }

    /// Runs `body` on the entry of `id` in place and returns its result; nil, and `body` does not run, when there is
    /// no such entry. (A `_modify` accessor would read better at the call sites, but its coroutine frame, holding
    /// the array's own access, is too large for the caller's buffer: Swift allocated it on the heap at each access.)
    @discardableResult
    @inline(__always)
    mutating func update<R>(_ id: Int32, _ body: (inout Value) throws -> R) rethrows -> R? {
        guard let i = slot(of: id) else { return nil }
        return try body(&values[i]!)
    }

    /// Removes and returns the entry for `id`.
    @discardableResult
    mutating func removeValue(forID id: Int32) -> Value? {
        guard let i = slot(of: id) else { return nil }
        let value = values[i]
        removeSlot(i)
        return value
    }

    /// The ids present, in increasing order.
    func sortedIDs() -> [Int32] {
        ids.filter { $0 != 0 }.sorted()
    }

    /// The entries present, by increasing id.
    func sortedEntries() -> [(id: Int32, value: Value)] {
        ids.indices.compactMap { i in values[i].map { (id: ids[i], value: $0) } }.sorted { $0.id < $1.id }
    }

    /// Calls `body` with each entry, in no particular order (without copying the table).
    func forEachValue(_ body: (Value) throws -> Void) rethrows {
        for value in values {
            if let value { try body(value) }
        }
    }

    /// Removes every entry (keeping the capacity).
    mutating func removeAll() {
        for i in ids.indices {
            ids[i] = 0
            values[i] = nil
        }
        count = 0
    }

    private mutating func insert(_ id: Int32, _ value: Value) {
        let i = reserveSlot(for: id)
        values[i] = value
        count += 1
    }

    /// Marks the first free slot of `id`'s probe sequence as `id`'s (growing first if the table is three quarters
    /// full) and returns it; its value is still nil and `count` unchanged. Only for an id not in the table.
    private mutating func reserveSlot(for id: Int32) -> Int {
        precondition(id > 0, "HTTP/2 stream ids are positive")
        if (count + 1) * 4 > ids.count * 3 { grow() }
        var i = home(id)
        while ids[i] != 0 { i = (i + 1) & mask }
        ids[i] = id
        return i
    }

    private mutating func grow() {
        let oldIDs = ids
        var oldValues = values
        let capacity = Swift.max(8, ids.count * 2)
        ids = Array(repeating: 0, count: capacity)
        values = Array(repeating: nil, count: capacity)
        count = 0
        for j in oldIDs.indices where oldIDs[j] != 0 {
            insert(oldIDs[j], oldValues[j].take()!)
        }
    }

    /// Empties slot `i` and moves back the entries after it that would otherwise no longer be found (backward-shift
    /// deletion for linear probing).
    private mutating func removeSlot(_ i: Int) {
        var hole = i
        var j = i
        while true {
            j = (j + 1) & mask
            let id = ids[j]
            if id == 0 { break }
            let h = home(id)
            // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
            let stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if stays { continue }
            ids[hole] = id
            values[hole] = values[j].take()
            hole = j
        }
        ids[hole] = 0
        values[hole] = nil
        count -= 1
    }
}
