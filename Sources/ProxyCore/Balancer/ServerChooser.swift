/// The balancing rule: the eligible server with the fewest open streams; among equals, the first one at or after
/// a rotating start, so that an idle proxy spreads requests round-robin.
enum ServerChooser {
    /// - Parameters:
    ///   - loads: open streams per server, `nil` for a server that must not be chosen (unhealthy).
    ///   - start: where the round-robin turn begins (any integer; taken modulo the count).
    /// - Returns: the chosen index, or nil when no server is eligible.
    static func choose(loads: [Int?], start: Int) -> Int? {
        choose(count: loads.count, start: start) { loads[$0] }
    }

    /// The same over `count` servers whose loads `load(index)` gives (no array per request on the hot path).
    static func choose(count: Int, start: Int, load: (Int) -> Int?) -> Int? {
        guard count > 0 else { return nil }
        let first = ((start % count) + count) % count
        var best: Int?
        var bestLoad = Int.max
        for offset in 0..<count {
            let index = (first + offset) % count
            if let value = load(index), value < bestLoad {
                best = index
                bestLoad = value
            }
        }
        return best
    }
}
