import Foundation

/// The replica's keys in byte order, beside its hash map of entries, so a listing costs O(log n + page) instead of
/// sorting the whole key space under the node's lock (as Python's sortedcontainers does it: a sorted array of
/// sorted chunks, each at most `chunkMax` keys). Finding a key is two binary searches; inserting or removing one
/// moves at most a chunk's elements, and splitting a full chunk moves the chunk array once every `chunkMax / 2`
/// inserts into it. A value type, like the participant that holds it.
public struct SortedKeyIndex: Sendable {
    private var chunks: [[[UInt8]]] = []
    /// The last key of each chunk, for the search across chunks.
    private var lasts: [[UInt8]] = []
    public private(set) var count = 0
    private let chunkMax: Int

    public init(chunkMax: Int = 512) {
        precondition(chunkMax >= 4)
        self.chunkMax = chunkMax
    }

    /// Adds `key` (a key already present is left as it is).
    public mutating func insert(_ key: [UInt8]) {
        guard !chunks.isEmpty else {
            chunks = [[key]]
            lasts = [key]
            count = 1
            return
        }
        // The first chunk whose last key is >= key, or the last chunk for a key above them all.
        let chunk = min(Self.lowerBound(key, in: lasts), chunks.count - 1)
        let position = Self.lowerBound(key, in: chunks[chunk])
        if position < chunks[chunk].count, Self.compare(chunks[chunk][position], key) == 0 { return }
        chunks[chunk].insert(key, at: position)
        if position == chunks[chunk].count - 1 { lasts[chunk] = key }
        count += 1
        if chunks[chunk].count > chunkMax {
            let upper = Array(chunks[chunk][(chunkMax / 2)...])
            chunks[chunk].removeSubrange((chunkMax / 2)...)
            lasts[chunk] = chunks[chunk][chunks[chunk].count - 1]
            chunks.insert(upper, at: chunk + 1)
            lasts.insert(upper[upper.count - 1], at: chunk + 1)
        }
    }

    /// Removes `key` if present.
    public mutating func remove(_ key: [UInt8]) {
        let chunk = Self.lowerBound(key, in: lasts)
        guard chunk < chunks.count else { return }
        let position = Self.lowerBound(key, in: chunks[chunk])
        guard position < chunks[chunk].count, Self.compare(chunks[chunk][position], key) == 0 else { return }
        chunks[chunk].remove(at: position)
        count -= 1
        if chunks[chunk].isEmpty {
            chunks.remove(at: chunk)
            lasts.remove(at: chunk)
        } else if position == chunks[chunk].count {
            lasts[chunk] = chunks[chunk][position - 1]
        }
    }

    public mutating func removeAll() {
        chunks.removeAll()
        lasts.removeAll()
        count = 0
    }

    /// Calls `body` with each key that starts with `prefix` and sorts after `after` (every such key when `after`
    /// is empty), in byte order, until `body` returns false or the range ends.
    public func forEach(prefix: [UInt8], after: [UInt8], _ body: ([UInt8]) -> Bool) {
        // The first candidate: the smallest key above `after`, or at or above `prefix`, whichever is greater.
        let start: [UInt8]
        let inclusive: Bool
        if !after.isEmpty && Self.compare(after, prefix) >= 0 {
            (start, inclusive) = (after, false)
        } else {
            (start, inclusive) = (prefix, true)
        }
        var chunk = Self.lowerBound(start, in: lasts)
        guard chunk < chunks.count else { return }
        var position = Self.lowerBound(start, in: chunks[chunk])
        if !inclusive, position < chunks[chunk].count, Self.compare(chunks[chunk][position], start) == 0 {
            position += 1
        }
        while chunk < chunks.count {
            let keys = chunks[chunk]
            while position < keys.count {
                let key = keys[position]
                guard key.starts(with: prefix), body(key) else { return }
                position += 1
            }
            chunk += 1
            position = 0
        }
    }

    /// The index of the first element of `sorted` that is not below `key` (`sorted.count` if none).
    private static func lowerBound(_ key: [UInt8], in sorted: [[UInt8]]) -> Int {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if compare(sorted[middle], key) < 0 { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Byte order, as `lexicographicallyPrecedes`, with memcmp.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        let common = min(a.count, b.count)
        let result = a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common) }
        }
        if result != 0 { return Int(result) }
        return a.count - b.count
    }
}
