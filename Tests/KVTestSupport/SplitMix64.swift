/// A tiny seeded pseudo-random generator (SplitMix64) so generated test cases, and simulation runs, are the
/// same on every run. Shared by the test targets.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    /// `count` random bytes, biased towards the bytes the wire format treats specially.
    public mutating func bytes(count: Int) -> [UInt8] {
        let special: [UInt8] = [UInt8(ascii: ";"), UInt8(ascii: "%"), 0x0D, 0x0A, 0x00, 0xFF]
        return (0..<count).map { _ in
            Int.random(in: 0..<4, using: &self) == 0
                ? special[Int.random(in: 0..<special.count, using: &self)]
                : UInt8.random(in: 0...255, using: &self)
        }
    }
}
