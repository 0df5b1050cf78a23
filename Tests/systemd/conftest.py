"""Fixtures for the systemd tests: a real systemd booted in private namespaces (nsystemd.py), with kv installed
by scripts/install.sh inside it. One system per test module, shut down (SIGKILL to its PID 1) whatever
happens; when a test fails, the journal of the kv units is attached to its report."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import nsystemd  # noqa: E402

_unavailable = []


def _bin_dir():
    env = os.environ.get("KV_BIN_DIR")
    if env:
        return env
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A booted systemd (journald and Debian's nginx.service running), nothing of kv installed yet."""
    if not _unavailable:
        _unavailable.append(nsystemd.unavailable_reason())
    if _unavailable[0]:
        pytest.skip(f"this machine cannot boot systemd in a namespace: {_unavailable[0]}")
    system = nsystemd.NamespacedSystemd(str(tmp_path_factory.mktemp("systemd")), REPO, _bin_dir())
    try:
        system.boot()
        yield system
    finally:
        system.shutdown()


def install(system):
    """Runs scripts/install.sh inside, as an admin would (binaries from the build, bind-mounted)."""
    return system.run("/run/kvtest/src/scripts/install.sh", env={"KV_BIN_DIR": "/run/kvtest/bin"})


@pytest.fixture(scope="module")
def kv(system):
    """The booted system with kv installed by scripts/install.sh (not started)."""
    system.install_output = install(system).stdout
    return system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("call", "setup"):
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, nsystemd.NamespacedSystemd) and value.pid1 is not None:
                try:
                    status = value.systemctl("status", "--lines=0", "kv*", "nginx.service", check=False).stdout
                    journal = value.journal(lines=150)
                except Exception as exc:  # the system itself may be gone
                    status, journal = "", f"(journal unavailable: {exc})"
                report.sections.append(("systemctl status kv* (namespaced systemd)", status))
                report.sections.append(("journalctl -n 150 (namespaced systemd)", journal))
                break


def pytest_terminal_summary(terminalreporter):
    if nsystemd.REPORT:
        terminalreporter.section("systemd")
        for line in nsystemd.REPORT:
            terminalreporter.write_line(line)
