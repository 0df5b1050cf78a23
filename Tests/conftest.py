"""Options for every pytest suite under Tests/.

--fail-on-skip (scripts/test.sh passes it when KV_FAIL_ON_SKIP=1, which .ci/run sets): a test that skips itself
fails instead, saying why it skipped. CI installs everything the suites need, so a skip there means a suite
that would otherwise pass without having run."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--fail-on-skip", action="store_true", default=False,
                     help="report every skipped test as a failure (CI: nothing may silently not run)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not item.config.getoption("fail_on_skip"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under --fail-on-skip (a skip fails in CI): {reason}"
