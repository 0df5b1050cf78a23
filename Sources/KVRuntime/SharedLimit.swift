import Synchronization

/// A byte limit that a reload may change while many connections read it: a replica's request line limit, the
/// master's reply line limit and its FastCGI body cap. Each read is one relaxed atomic load, so a connection
/// opened before a reload still holds to the new limit (a larger value must not fail on an old connection).
public final class SharedLimit: Sendable {
    private let bytes: Atomic<Int>

    public init(_ bytes: Int) { self.bytes = Atomic(bytes) }

    public var value: Int {
        get { bytes.load(ordering: .relaxed) }
        set { bytes.store(newValue, ordering: .relaxed) }
    }
}
