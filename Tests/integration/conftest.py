"""Fixtures for integration tests: a real cluster (nginx + kv-master + 3 kv-replicad) on free loopback
ports in a temporary directory, stopped by PID after each test whatever happened."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))

import kvcluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    from helpers import running_cluster
    with running_cluster(tmp_path) as c:
        yield c


@pytest.fixture
def memory_cluster(tmp_path):
    """A cluster whose data lives on tmpfs (/dev/shm), so fsync costs nothing: for tests of what the servers do
    under load, whose bounds must not depend on the latency of the disk the machine shares with others."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    root = tempfile.mkdtemp(prefix="kv-mem-", dir="/dev/shm")
    os.chmod(root, 0o755)
    c = kvcluster.Cluster.generate(os.path.join(root, "kv"))
    try:
        c.start()
        yield c
    finally:
        c.kill_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def unstarted_cluster(tmp_path):
    """A cluster configured on free ports (crash_helpers.make_cluster) that the test starts itself."""
    from crash_helpers import make_cluster
    c = make_cluster(tmp_path)
    print(f"cluster run dir: {c.run_dir}")
    try:
        yield c
    finally:
        c.kill_all()


@pytest.fixture
def unstarted_tls_cluster(tmp_path):
    """As unstarted_cluster, with mutual TLS on every cluster link (security.tls)."""
    from crash_helpers import make_cluster
    c = make_cluster(tmp_path, link_tls=True)
    print(f"cluster run dir: {c.run_dir}")
    try:
        yield c
    finally:
        c.kill_all()


def pytest_configure(config):
    if not os.environ.get("KV_BIN_DIR"):
        os.environ["KV_BIN_DIR"] = kvcluster.default_bin_dir()
