import KVRuntime
import NIOCore
import NIOEmbedded
import XCTest

final class DeadlineSweeperTests: XCTestCase {
    private let loop = EmbeddedEventLoop()
    private var fired: [String] = []
    private func at(_ ms: Int64) -> NIODeadline { NIODeadline.uptimeNanoseconds(0) + .milliseconds(ms) }
    private func sweeper() -> DeadlineSweeper<String> { DeadlineSweeper(loop: loop) { [unowned self] in fired.append($0) } }

    func testOnlyExpiredTimersFireEachOnce() {
        let timers = sweeper()
        timers.start("first", at: at(100))
        timers.start("second", at: at(200))
        timers.start("third", at: at(300))
        loop.advanceTime(to: at(150))
        XCTAssertEqual(fired, ["first"])
        timers.cancel("second")
        loop.advanceTime(to: at(1_000))
        XCTAssertEqual(fired, ["first", "third"], "a cancelled timer never fires")
        XCTAssertEqual(timers.count, 0)
    }

    func testAnEarlierDeadlineStartedLaterStillFiresOnTime() {
        let timers = sweeper()
        timers.start("late", at: at(500))
        timers.start("early", at: at(50))
        loop.advanceTime(to: at(60))
        XCTAssertEqual(fired, ["early"])
        loop.advanceTime(to: at(500))
        XCTAssertEqual(fired, ["early", "late"])
    }

    func testARestartedTimerKeepsOnlyItsNewDeadline() {
        let timers = sweeper()
        timers.start("phase", at: at(100))
        timers.start("phase", at: at(400))  // the next phase's time-out replaces the first
        loop.advanceTime(to: at(300))
        XCTAssertEqual(fired, [])
        loop.advanceTime(to: at(400))
        XCTAssertEqual(fired, ["phase"])
    }

    func testATimerStartedAgainAfterFiringFiresAgain() {
        let timers = sweeper()
        timers.start("t", at: at(10))
        loop.advanceTime(to: at(20))
        timers.start("t", at: at(30))
        loop.advanceTime(to: at(40))
        XCTAssertEqual(fired, ["t", "t"])
    }
}
