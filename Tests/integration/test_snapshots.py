"""Snapshots and log segments: a replica's state survives snapshot + truncation + SIGKILL, and old files go."""
import glob
import os

import pytest

from crash_helpers import wait_healthy
from helpers import replica_contents, running_cluster


@pytest.fixture
def small_snapshot_cluster(tmp_path):
    with running_cluster(tmp_path, storage={"snapshot_log_bytes_max": 16384}) as c:
        yield c


def data_dir(cluster, rid):
    path = cluster.replica(rid)["data_dir"]
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(cluster.config_path), path)


def test_snapshots_truncate_the_log_and_restore_exactly(small_snapshot_cluster):
    c = small_snapshot_cluster
    keys = [f"s{i}".encode() for i in range(300)]
    for round_ in range(3):
        for i, k in enumerate(keys):
            if (i + round_) % 7 == 0:
                c.http("DELETE", "/kv/" + k.decode())
            else:
                assert c.http("PUT", "/kv/" + k.decode(), body=f"{round_}-{i}".encode())[0] == 200
    # The master answers a write once its decision is durable and delivers the `com` after: the last one may
    # not be applied everywhere yet. Compare once nothing is in doubt and no commit is left to deliver.
    wait_healthy(c)
    before = {rid: c.stat(rid) for rid in c.replica_ids}
    assert len({s["digest"] for s in before.values()}) == 1, before
    directory = data_dir(c, "r2")
    snapshots = sorted(glob.glob(os.path.join(directory, "snapshot-*.snap")))
    segments = sorted(glob.glob(os.path.join(directory, "wal-*.log")))
    assert snapshots, os.listdir(directory)
    # Only the newest snapshot and the segments from its generation on are kept.
    assert len(snapshots) == 1, snapshots
    generation = int(os.path.basename(snapshots[0])[9:-5])
    assert all(int(os.path.basename(s)[4:-4]) >= generation for s in segments), (snapshots, segments)
    total_log_bytes = sum(os.path.getsize(s) for s in segments)
    assert total_log_bytes < 200_000, total_log_bytes

    contents_before = replica_contents(c, "r2", keys)
    c.kill_replica("r2")
    c.start_replica("r2")
    # r2's last COMMIT record may not have been durable when it was killed (it rides with the next flush): the
    # master completes that write when it reconnects. Compare once nothing is in doubt.
    wait_healthy(c)
    after = c.stat("r2")
    assert after["digest"] == before["r2"]["digest"] and after["keys"] == before["r2"]["keys"]
    assert after["last_committed_seq"] == before["r2"]["last_committed_seq"]
    assert replica_contents(c, "r2", keys) == contents_before
    assert "restored" in c.log("r2") and "from snapshot" in c.log("r2")
    # The master's decision log compacts at the same size: old generations are gone, seqs stay unique.
    master_dir = os.path.join(os.path.dirname(c.config_path), "data", "master")
    decision_logs = glob.glob(os.path.join(master_dir, "decisions-*.log"))
    assert len(decision_logs) == 1 and not decision_logs[0].endswith("decisions-1.log"), decision_logs
    assert "decision log compacted" in c.log("master")
    c.kill_master()
    c.start_master()
    assert c.http("PUT", "/kv/after-restart", body=b"x")[0] == 200
    # Writes keep working after the restart, on top of the snapshot.
    assert c.http("PUT", "/kv/s1", body=b"final")[0] == 200
    assert replica_contents(c, "r2", [b"s1"])[b"s1"][0] == "final"
