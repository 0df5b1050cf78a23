import KVRuntime
import NIOCore
import NIOEmbedded
import XCTest

final class DeadlineSweeperTests: XCTestCase {
    private final class Target: DeadlineTarget {
        var deadline: NIODeadline
        var passed = 0
        init(_ deadline: NIODeadline) { self.deadline = deadline }
        func deadlinePassed() { passed += 1 }
    }

    private let loop = EmbeddedEventLoop()
    private func at(_ ms: Int64) -> NIODeadline { NIODeadline.uptimeNanoseconds(0) + .milliseconds(ms) }

    func testOnlyExpiredTargetsTimeOutEachOnce() {
        let sweeper = DeadlineSweeper.current(on: loop)
        let first = Target(at(100)), second = Target(at(200)), third = Target(at(300))
        for target in [first, second, third] { sweeper.watch(target) }
        loop.advanceTime(to: at(150))
        XCTAssertEqual([first.passed, second.passed, third.passed], [1, 0, 0])
        sweeper.forget(second)
        loop.advanceTime(to: at(1_000))
        XCTAssertEqual([first.passed, second.passed, third.passed], [1, 0, 1], "a forgotten target never times out")
        XCTAssertEqual(sweeper.watchedCount, 0)
    }

    func testAnEarlierDeadlineWatchedLaterStillFiresOnTime() {
        let sweeper = DeadlineSweeper.current(on: loop)
        let late = Target(at(500)), early = Target(at(50))
        sweeper.watch(late)
        sweeper.watch(early)
        loop.advanceTime(to: at(60))
        XCTAssertEqual([early.passed, late.passed], [1, 0])
        loop.advanceTime(to: at(500))
        XCTAssertEqual([early.passed, late.passed], [1, 1])
    }

    func testAMovedDeadlineIsTheOneThatCounts() {
        let sweeper = DeadlineSweeper.current(on: loop)
        let target = Target(at(100))
        sweeper.watch(target)
        target.deadline = at(400)  // the next phase's time-out replaces the first
        sweeper.watch(target)
        loop.advanceTime(to: at(300))
        XCTAssertEqual(target.passed, 0)
        loop.advanceTime(to: at(400))
        XCTAssertEqual(target.passed, 1)
    }

    func testATargetWatchedAgainAfterTimingOutTimesOutAgain() {
        let sweeper = DeadlineSweeper.current(on: loop)
        let target = Target(at(10))
        sweeper.watch(target)
        loop.advanceTime(to: at(20))
        target.deadline = at(30)
        sweeper.watch(target)
        loop.advanceTime(to: at(40))
        XCTAssertEqual(target.passed, 2)
    }
}
