import KVTestSupport

/// The simulation's only source of randomness (SplitMix64), so one seed always replays the same run.
///
/// Nothing in the simulation may iterate a `Dictionary` or `Set` in a way that changes behaviour (their order
/// differs between processes); choices are made from sorted arrays with this generator.
struct SimRandom {
    private var source: SplitMix64

    init(seed: UInt64) { source = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { source.next() }

    /// A number in `0..<bound`.
    mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "below(_:) needs a positive bound")
        return Int(next() % UInt64(bound))
    }

    /// True with probability `percent`/100.
    mutating func percent(_ percent: Int) -> Bool { below(100) < percent }

    mutating func pick<T>(_ items: [T]) -> T {
        precondition(!items.isEmpty, "pick(_:) needs at least one item")
        return items[below(items.count)]
    }

    /// Picks an index with probability proportional to its weight (weights must not all be zero).
    mutating func weighted(_ weights: [Int]) -> Int {
        let total = weights.reduce(0, +)
        precondition(total > 0, "weighted(_:) needs a positive total weight")
        var roll = below(total)
        for (index, weight) in weights.enumerated() {
            if roll < weight { return index }
            roll -= weight
        }
        return weights.count - 1
    }
}
