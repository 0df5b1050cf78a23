@testable import KVCommon
import KVTestSupport
import XCTest

final class SortedKeyIndexTests: XCTestCase {
    /// Every listing the index gives equals filtering and sorting a plain set, after random inserts and removes
    /// (small chunks, so splits and emptied chunks happen all the time).
    func testMatchesASortedSetUnderRandomChanges() {
        for seed in UInt64(1)...20 {
            var random = SplitMix64(seed: seed)
            var index = SortedKeyIndex(chunkMax: 4 + Int(seed % 5))
            var reference = Set<[UInt8]>()
            for step in 0..<2000 {
                // Short keys over a small alphabet: shared prefixes, duplicates and the empty key all occur.
                let key = (0..<Int.random(in: 0...4, using: &random)).map { _ in UInt8.random(in: 97...100, using: &random) }
                if Bool.random(using: &random) || reference.count < 10 {
                    index.insert(key)
                    reference.insert(key)
                } else {
                    index.remove(key)
                    reference.remove(key)
                }
                XCTAssertEqual(index.count, reference.count, "seed \(seed) step \(step)")
                if step % 50 == 0 {
                    let prefix = (0..<Int.random(in: 0...2, using: &random)).map { _ in UInt8.random(in: 97...100, using: &random) }
                    let after = (0..<Int.random(in: 0...3, using: &random)).map { _ in UInt8.random(in: 97...100, using: &random) }
                    let expected = reference.filter { $0.starts(with: prefix) && (after.isEmpty || after.lexicographicallyPrecedes($0)) }
                        .sorted { $0.lexicographicallyPrecedes($1) }
                    XCTAssertEqual(keys(index, prefix: prefix, after: after), expected,
                                   "seed \(seed) step \(step) prefix \(prefix) after \(after)")
                }
            }
            XCTAssertEqual(keys(index, prefix: [], after: []), reference.sorted { $0.lexicographicallyPrecedes($1) })
        }
    }

    func testStopsWhenTheBodySaysSoAndAtTheEndOfThePrefix() {
        var index = SortedKeyIndex(chunkMax: 4)
        for key in ["a/1", "a/2", "a/3", "a0", "b/1", "a/", "a"] { index.insert(Array(key.utf8)) }
        var seen: [String] = []
        index.forEach(prefix: Array("a/".utf8), after: []) { key in
            seen.append(String(decoding: key, as: UTF8.self))
            return seen.count < 2
        }
        XCTAssertEqual(seen, ["a/", "a/1"])
        XCTAssertEqual(keys(index, prefix: Array("a/".utf8), after: Array("a/1".utf8)).map { String(decoding: $0, as: UTF8.self) },
                       ["a/2", "a/3"])
        XCTAssertEqual(keys(index, prefix: Array("a/".utf8), after: Array("a/3".utf8)), [])
        XCTAssertEqual(keys(index, prefix: Array("c".utf8), after: []), [])
        index.removeAll()
        XCTAssertEqual(index.count, 0)
        XCTAssertEqual(keys(index, prefix: [], after: []), [])
    }

    func testByteOrderIsUnsigned() {
        XCTAssertLessThan(SortedKeyIndex.compare([0x7F], [0x80]), 0)
        XCTAssertLessThan(SortedKeyIndex.compare([0x01], [0x01, 0x00]), 0)
        XCTAssertEqual(SortedKeyIndex.compare([], []), 0)
        XCTAssertGreaterThan(SortedKeyIndex.compare([0xFF], []), 0)
    }

    private func keys(_ index: SortedKeyIndex, prefix: [UInt8], after: [UInt8]) -> [[UInt8]] {
        var result: [[UInt8]] = []
        index.forEach(prefix: prefix, after: after) { result.append($0); return true }
        return result
    }
}
