@testable import KVCommon
import KVTestSupport
import XCTest

final class WatchRegistryTests: XCTestCase {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func testAQueryWakesOnceByAChangeInScopeAndAStreamEveryTime() {
        var registry = WatchRegistry<Int>()
        registry.addQuery(1, scope: .key(bytes("a/1")), deadlineMs: 1000)
        registry.addQuery(2, scope: .prefix(bytes("a/")), deadlineMs: 1000)
        registry.addQuery(3, scope: .prefix(bytes("b")), deadlineMs: 1000)
        registry.addStream(4, scope: .prefix(bytes("a")))
        registry.addStream(5, scope: .prefix([]))
        var woken = registry.changed([bytes("a/2")])
        XCTAssertEqual(Set(woken.queries), [2])
        XCTAssertEqual(Set(woken.streams), [4, 5])
        woken = registry.changed([bytes("a/1"), bytes("c")])
        XCTAssertEqual(Set(woken.queries), [1], "query 2 was woken already")
        XCTAssertEqual(Set(woken.streams), [4, 5])
        XCTAssertEqual(registry.count, 3)
        registry.remove(4)
        woken = registry.changed([bytes("a"), bytes("b/x")])
        XCTAssertEqual(Set(woken.queries), [3])
        XCTAssertEqual(Set(woken.streams), [5])
        XCTAssertEqual(registry.count, 1)
    }

    func testDeadlinesExpireInOrderAndSkipWakenOrReplacedQueries() {
        var registry = WatchRegistry<String>()
        registry.addQuery("late", scope: .key(bytes("k")), deadlineMs: 300)
        registry.addQuery("early", scope: .key(bytes("k")), deadlineMs: 100)
        registry.addQuery("woken", scope: .key(bytes("w")), deadlineMs: 50)
        registry.addQuery("replaced", scope: .key(bytes("r")), deadlineMs: 60)
        registry.addQuery("replaced", scope: .key(bytes("r")), deadlineMs: 400)   // a new wait of the same id
        XCTAssertEqual(registry.changed([bytes("w")]).queries, ["woken"])
        XCTAssertEqual(registry.nextDeadline(), 100)
        XCTAssertEqual(registry.expired(nowMs: 99), [])
        XCTAssertEqual(registry.expired(nowMs: 100), ["early"])
        XCTAssertEqual(registry.expired(nowMs: 350), ["late"])
        XCTAssertEqual(registry.nextDeadline(), 400)
        XCTAssertEqual(registry.changed([bytes("k")]).queries, [], "expired queries are gone")
        XCTAssertEqual(registry.expired(nowMs: 1000), ["replaced"])
        XCTAssertNil(registry.nextDeadline())
        XCTAssertEqual(registry.count, 0)
    }

    /// Against checking every waiter's scope directly: the same waiters wake, whatever mix of keys and prefixes.
    func testMatchesCheckingEveryScope() {
        var random = SplitMix64(seed: 3)
        var registry = WatchRegistry<Int>()
        var scopes: [Int: ChangeHistory.Scope] = [:]
        func word() -> [UInt8] { (0..<Int.random(in: 0...3, using: &random)).map { _ in UInt8.random(in: 97...99, using: &random) } }
        for step in 0..<3000 {
            let id = Int.random(in: 0..<60, using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                let scope: ChangeHistory.Scope = Bool.random(using: &random) ? .key(word()) : .prefix(word())
                registry.addStream(id, scope: scope)
                scopes[id] = scope
            case 1:
                registry.remove(id)
                scopes[id] = nil
            default:
                let keys = (0..<Int.random(in: 1...3, using: &random)).map { _ in word() }
                let expected = Set(scopes.filter { _, scope in keys.contains { scope.contains($0) } }.keys)
                XCTAssertEqual(Set(registry.changed(keys).streams), expected, "step \(step)")
            }
            XCTAssertEqual(registry.count, scopes.count)
        }
    }
}
