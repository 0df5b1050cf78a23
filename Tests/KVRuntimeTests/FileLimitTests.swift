import Foundation
import KVRuntime
import XCTest

final class FileLimitTests: XCTestCase {
    private var saved = rlimit()

    override func setUp() {
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
    }

    override func tearDown() {
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
    }

    /// A soft limit below what the configuration needs is raised to it (systemd starts services at 1024).
    func testRaisesTheSoftLimitToWhatIsNeeded() {
        var low = saved
        low.rlim_cur = 100
        XCTAssertEqual(setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low), 0)
        XCTAssertEqual(FileLimit.current, 100)
        XCTAssertNil(FileLimit.raise(toFit: 300, what: "the test"))
        XCTAssertEqual(FileLimit.current, 300)
        XCTAssertNil(FileLimit.raise(toFit: 200, what: "the test"), "a limit that fits is left as it is")
        XCTAssertEqual(FileLimit.current, 300)
    }

    /// Past the hard limit it raises what it can and says what to change.
    func testWarnsPastTheHardLimit() throws {
        guard saved.rlim_max < rlim_t(Int32.max) else {
            // No finite hard limit (RLIM_INFINITY): nothing is past it, so any need fits.
            XCTAssertNil(FileLimit.raise(toFit: 1 << 20, what: "the test"))
            return
        }
        let beyond = Int(saved.rlim_max) + 1
        let warning = try XCTUnwrap(FileLimit.raise(toFit: beyond, what: "limits.replica_connections_max (x)"))
        XCTAssertTrue(warning.contains("LimitNOFILE=") && warning.contains("\(beyond)"), warning)
        XCTAssertEqual(FileLimit.current, Int(saved.rlim_max))
    }
}
