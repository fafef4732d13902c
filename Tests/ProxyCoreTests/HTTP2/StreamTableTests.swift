import Testing
@testable import ProxyCore

@Suite struct StreamTableTests {
    @Test func insertsFindsAndRemoves() {
        var table = StreamTable<String>()
        #expect(table.isEmpty)
        #expect(table[1] == nil)
        table[1] = "one"
        table[3] = "three"
        #expect(table.count == 2)
        #expect(table[1] == "one")
        #expect(table[3] == "three")
        #expect(table[5] == nil)
        #expect(table.removeValue(forID: 1) == "one")
        #expect(table.removeValue(forID: 1) == nil)
        #expect(table[1] == nil)
        #expect(table.count == 1)
        table[3] = nil
        #expect(table.isEmpty)
        #expect(table.sortedIDs().isEmpty)
    }

    @Test func updatesInPlaceAndRemovesWhenSetToNil() {
        struct Entry { var values: [Int] = [] }
        var table = StreamTable<Entry>()
        table[7] = Entry()
        table.update(7) { $0.values.append(1) }
        let count = table.update(7) { entry -> Int in
            entry.values.append(2)
            return entry.values.count
        }
        #expect(count == 2)
        #expect(table[7]?.values == [1, 2])
        // An absent id: the body does not run and nothing is inserted.
        var ran = false
        #expect(table.update(9) { _ in ran = true } == nil)
        #expect(!ran)
        #expect(table[9] == nil)
        #expect(table.count == 1)
        table[7] = nil
        #expect(table[7] == nil)
        #expect(table.isEmpty)
        table[9] = nil   // removing an absent id changes nothing
        #expect(table.isEmpty)
    }

    @Test func updatingAValueDoesNotCopyIt() {
        final class Box {}
        struct Entry {
            var box = Box()
            /// Whether this mutation sees the only reference to `box`: false if the table handed out a copy.
            mutating func mutatedInPlace() -> Bool { isKnownUniquelyReferenced(&box) }
        }
        var table = StreamTable<Entry>()
        table[1] = Entry()
        table[3] = Entry()
        #expect(table.update(1) { $0.mutatedInPlace() } == true)
        #expect(table.update(3) { $0.mutatedInPlace() } == true)
    }

    /// Ids that share a home slot (same `id >> 1` modulo the capacity), removed in every order, against a
    /// `Dictionary` as the model: backward-shift deletion must keep every remaining entry reachable.
    @Test func collidingIDsStayReachableAfterRemovals() {
        for seed in 0..<200 {
            var rng = SplitMix(seed: UInt64(seed))
            var table = StreamTable<Int32>()
            var model: [Int32: Int32] = [:]
            for step in 0..<400 {
                // Ids from a small set that collide heavily at small capacities, plus consecutive odd ids.
                let id = rng.next() % 3 == 0 ? Int32(1 + 2 * (rng.next() % 40)) : Int32(1 + 16 * (rng.next() % 24))
                switch rng.next() % 3 {
                case 0, 1:
                    table[id] = Int32(step)
                    model[id] = Int32(step)
                default:
                    #expect(table.removeValue(forID: id) == model.removeValue(forKey: id))
                }
                #expect(table.count == model.count)
            }
            for id in Int32(0)...400 {
                #expect(table[id] == model[id], "seed \(seed), id \(id)")
            }
            #expect(table.sortedIDs() == model.keys.sorted())
            #expect(table.sortedEntries().map(\.value) == model.sorted { $0.key < $1.key }.map(\.value))
        }
    }

    @Test func growsAndKeepsEverything() {
        var table = StreamTable<Int>()
        for i in 0..<10_000 { table[Int32(2 * i + 1)] = i }
        #expect(table.count == 10_000)
        for i in 0..<10_000 { #expect(table[Int32(2 * i + 1)] == i) }
        var sum = 0
        table.forEachValue { sum += $0 }
        #expect(sum == (0..<10_000).reduce(0, +))
        for i in stride(from: 0, to: 10_000, by: 2) { table.removeValue(forID: Int32(2 * i + 1)) }
        #expect(table.count == 5_000)
        #expect(table[1] == nil)
        #expect(table[3] == 1)
        table.removeAll()
        #expect(table.isEmpty)
        #expect(table[3] == nil)
        table[3] = 3
        #expect(table[3] == 3)
    }
}

/// A small deterministic generator for the randomized test.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
    }
}
