"""Damaged replica logs: a torn last record is cut off at start and the replica still ends up with every
acknowledged write; a damaged record in the middle makes the replica refuse to start, naming the file and
byte offset, without touching the file."""
import os
import re

from crash_helpers import (ACK, ABORTED, check_identical, check_ledger, data_dir, exit_code, fresh_puts,
                           log_frames, log_tail, newest_log, start_cluster, wait_healthy, Ledger,
                           Op, FRAME_HEADER)
from kvcluster import wait_until


def write_sequentially(cluster, ledger, puts, deletes, stop_when=None):
    """`puts` puts of fresh keys, then `deletes` deletes of some of them, one at a time, recorded in `ledger`.
    Every answer must be 200 unless `stop_when(status)` turns true (then the remaining writes are skipped)."""
    for n in range(puts + deletes):
        if n < puts:
            op = Op("put", f"{ledger.tag}-{n}", f"{ledger.tag}:value:{n}")
            status, body = cluster.http("PUT", "/kv/" + op.key, body=op.value.encode())
        else:
            op = Op("del", f"{ledger.tag}-{(n - puts) * 3}", None)
            status, body = cluster.http("DELETE", "/kv/" + op.key)
        op.status, op.seq, op.detail = status, body.get("seq"), body.get("message")
        op.outcome = ACK if status == 200 else ABORTED if status in (409, 503) else "unexpected"
        ledger.add(op)
        if stop_when is not None and stop_when(status):
            return op
        assert status == 200, body
    return None


def refused_start(c, name, path, flip_at):
    """Flips the byte at `flip_at` of `path`, starts process `name` ("master" or a replica id) and waits for it to
    refuse: it must exit non-zero and leave the damaged file and its directory exactly as they were. Returns
    (exit code, what it logged while starting, the file's original bytes) for the caller's own checks."""
    with open(path, "rb") as f:
        original = f.read()
    damaged = bytearray(original)
    damaged[flip_at] ^= 0x5A
    with open(path, "wb") as f:
        f.write(damaged)
    directory = os.path.dirname(path)
    files_before = sorted(os.listdir(directory))
    before = len(c.log(name))
    if name == "master":
        c.start_master(wait=False)
    else:
        c.start_replica(name, wait=False)
    try:
        wait_until(lambda: not c.is_running(name), 30, f"{name} to refuse its damaged {os.path.basename(path)}")
    except TimeoutError:
        raise AssertionError(f"{name} started on {path} damaged at byte {flip_at}: "
                             f"{c.log(name)[before:][-2000:]}") from None
    code = exit_code(c, name)
    assert code not in (None, 0), f"{name} exited with {code}"
    # Nothing was dropped or rewritten: the damaged file is exactly as left, no file appeared or vanished.
    with open(path, "rb") as f:
        assert f.read() == bytes(damaged), f"{path} was modified by the failed start"
    assert sorted(os.listdir(directory)) == files_before
    return code, c.log(name)[before:], original


def test_torn_last_record_is_discarded_and_acknowledged_writes_survive(unstarted_cluster):
    c = unstarted_cluster
    start_cluster(c)
    ledger = Ledger("torn")
    write_sequentially(c, ledger, puts=30, deletes=8)
    # The client is answered once the master's COMMIT is durable; r2 writes its own COMMIT of the last write
    # after that, and does not force it (it rides with the next flush, or the writer's within ~100 ms). Wait
    # until that COMMIT is in the file, so the record torn below is it and not the (voted) PREPARE.
    last_seq = max(op.seq for op in ledger.snapshot())
    wait_until(lambda: c.stat("r2")["last_committed_seq"] >= last_seq, 10, f"r2 to commit seq {last_seq}")
    path = newest_log(data_dir(c, "r2"))

    def last_record_is_a_commit():
        frames = log_frames(path)
        with open(path, "rb") as f:
            f.seek(frames[-1][0] + FRAME_HEADER.size)
            return f.read(1) == b"\x02"  # record type 2 = COMMIT
    wait_until(last_record_is_a_commit, 10, f"r2's COMMIT of seq {last_seq} to reach its log")
    c.kill_replica("r2")
    frames = log_frames(path)
    size = os.path.getsize(path)
    assert frames and frames[-1][0] + FRAME_HEADER.size + frames[-1][1] == size, "log did not end on a frame"
    with open(path, "rb") as f:
        f.seek(frames[-1][0] + FRAME_HEADER.size)
        assert f.read(1) == b"\x02", "the last record is not a COMMIT"  # record type 2 = COMMIT
    os.truncate(path, size - 3)  # tear the last record (the COMMIT of the last acknowledged write)

    before = len(c.log("r2"))
    c.start_replica("r2")
    restart_log = c.log("r2")[before:]
    torn_lines = [l for l in restart_log.splitlines() if "torn record" in l]
    assert torn_lines and os.path.basename(path) in torn_lines[0], restart_log[-2000:]

    wait_healthy(c)
    check_ledger(c, ledger)  # r2 included: it must have caught up on the write whose COMMIT it lost
    check_identical(c)
    fresh_puts(c, list(ledger.by_key()), tag="torn")


def test_torn_unacknowledged_prepare_is_discarded(unstarted_cluster):
    """The crash the torn-tail rule is made for: r2 dies right after writing a PREPARE it never voted on."""
    c = unstarted_cluster
    start_cluster(c, env_for={"r2": {"KV_FAILPOINTS": "replica-after-prepare-fsync@25"}})
    ledger = Ledger("tornprep")
    # r2's socket closes while it exits, so the master can answer 503 a moment before the process is gone:
    # after a failed write, give r2 a few seconds to finish exiting before deciding it did not crash.
    def r2_crashed(status):
        if status == 200:
            return not c.is_running("r2")
        try:
            wait_until(lambda: not c.is_running("r2"), 10, "r2 to exit")
            return True
        except TimeoutError:
            return False
    last = write_sequentially(c, ledger, puts=40, deletes=0, stop_when=r2_crashed)
    assert last is not None and exit_code(c, "r2") == 99, f"failpoint did not fire: {log_tail(c, 'r2')}"
    assert last.status == 503 and "r2" in last.detail, last  # the write that crashed r2 was not acknowledged
    path = newest_log(data_dir(c, "r2"))
    os.truncate(path, os.path.getsize(path) - 5)  # the PREPARE's append never completed

    before = len(c.log("r2"))
    c.start_replica("r2")
    restart_log = c.log("r2")[before:]
    assert "torn record" in restart_log and os.path.basename(path) in restart_log, restart_log[-2000:]
    wait_healthy(c)
    check_ledger(c, ledger)
    check_identical(c)
    fresh_puts(c, list(ledger.by_key()), tag="tornprep")


def test_flipped_byte_mid_log_refuses_to_start(unstarted_cluster):
    c = unstarted_cluster
    start_cluster(c)
    ledger = Ledger("flip")
    write_sequentially(c, ledger, puts=40, deletes=10)
    c.kill_replica("r3")
    directory = data_dir(c, "r3")
    path = newest_log(directory)
    frames = log_frames(path)
    assert len(frames) >= 3, f"{path}: only {len(frames)} records"
    frame_offset, length = frames[len(frames) // 2]  # a record in the middle, never the last one
    flip_at = frame_offset + FRAME_HEADER.size + length // 2
    _, startup_log, original = refused_start(c, "r3", path, flip_at)
    lines = [l for l in startup_log.splitlines() if "corrupt at byte offset" in l]
    assert lines, f"no 'corrupt at byte offset' message:\n{startup_log[-2000:]}"
    assert os.path.basename(path) in lines[0] and f"corrupt at byte offset {frame_offset}" in lines[0], lines[0]

    # Repairing the byte brings r3 back with every acknowledged write.
    with open(path, "wb") as f:
        f.write(original)
    c.start_replica("r3")
    wait_healthy(c)
    check_ledger(c, ledger)
    check_identical(c)


def test_a_damaged_master_decision_log_refuses_to_start_and_says_what_to_do(unstarted_cluster):
    c = unstarted_cluster
    start_cluster(c)
    ledger = Ledger("mflip")
    write_sequentially(c, ledger, puts=30, deletes=0)
    c.stop_master()
    directory = os.path.join(os.path.dirname(c.config_path), c.config["master"]["decision_log_dir"])
    logs = sorted(n for n in os.listdir(directory) if n.startswith("decisions-") and n.endswith(".log"))
    path = os.path.join(directory, logs[-1])
    frames = log_frames(path)
    assert len(frames) >= 3, f"{path}: only {len(frames)} records"
    frame_offset, length = frames[len(frames) // 2]
    code, startup, _ = refused_start(c, "master", path, frame_offset + FRAME_HEADER.size + length // 2)
    assert code == 1
    assert f"{logs[-1]} is corrupt at byte offset" in startup, startup[-2000:]
    assert "Restore decision_log_dir from a backup" in startup and "restore this replica" not in startup, \
        startup[-2000:]


def test_a_damaged_snapshot_refuses_to_start_and_the_replica_comes_back_once_repaired(tmp_path):
    """Snapshots every few KiB (storage.snapshot_log_bytes_max: 4096): a byte flipped inside r2's newest snapshot
    makes r2 refuse to start, naming the file, and leaves the files alone; with the byte put back r2 serves
    every acknowledged write again."""
    from helpers import running_cluster
    with running_cluster(tmp_path, storage={"snapshot_log_bytes_max": 4096}) as c:
        ledger = Ledger("snap")
        write_sequentially(c, ledger, puts=120, deletes=0)
        c.stop_replica("r2")
        directory = data_dir(c, "r2")
        snapshots = sorted(n for n in os.listdir(directory) if n.startswith("snapshot-") and n.endswith(".snap"))
        assert snapshots, f"no snapshot written in {directory}: {os.listdir(directory)}"
        path = os.path.join(directory, snapshots[-1])
        _, startup, original = refused_start(c, "r2", path, os.path.getsize(path) // 2)
        assert f"{snapshots[-1]} is corrupt at byte offset" in startup, startup[-2000:]

        with open(path, "wb") as f:
            f.write(original)
        c.start_replica("r2")
        wait_healthy(c)
        check_ledger(c, ledger)
        check_identical(c)


def test_a_crash_while_a_snapshot_is_written_loses_nothing_and_the_next_snapshot_is_whole(unstarted_cluster):
    """r2 dies (error point `replica-mid-snapshot`, exit 99) after writing its first snapshot's records to the
    temp file and before the fsync and rename: on restart the temp file is discarded, the log segments it would
    have replaced still hold everything, every acknowledged write is there, and the next snapshot is written
    whole and loads."""
    c = unstarted_cluster
    c.write_config(dict(c.config, storage={"snapshot_log_bytes_max": 4096}))
    start_cluster(c, env_for={"r2": {"KV_FAILPOINTS": "replica-mid-snapshot"}})
    directory = data_dir(c, "r2")
    ledger = Ledger("midsnap")
    stopped = write_sequentially(c, ledger, puts=400, deletes=0, stop_when=lambda status: status != 200)
    assert stopped is not None, "the snapshot error point never fired: 400 writes all committed"
    assert stopped.status == 503 and "r2" in (stopped.detail or ""), (stopped.status, stopped.detail)
    wait_until(lambda: not c.is_running("r2"), timeout_s=10, what="r2 to exit at the error point")
    assert exit_code(c, "r2") == 99, f"r2 exited with {exit_code(c, 'r2')}:\n{log_tail(c, 'r2')}"
    names = os.listdir(directory)
    temps = [n for n in names if n.startswith("snapshot-") and n.endswith(".snap.tmp")]
    assert temps and not any(n.endswith(".snap") for n in names), f"expected only a temp snapshot: {names}"

    c.start_replica("r2")
    wait_healthy(c)
    assert not any(n.endswith(".tmp") for n in os.listdir(directory)), os.listdir(directory)
    check_ledger(c, ledger)
    check_identical(c)

    after = Ledger("aftersnap")
    write_sequentially(c, after, puts=200, deletes=0)
    wait_until(lambda: any(n.endswith(".snap") for n in os.listdir(directory)), timeout_s=30,
               what="r2 to write a snapshot after the restart")
    c.stop_replica("r2")
    c.start_replica("r2")
    wait_healthy(c)
    restored = re.findall(r"restored (\d+) keys from snapshot (\d+)", c.log("r2"))
    assert restored and int(restored[-1][0]) > 0 and int(restored[-1][1]) > 0, \
        f"the second restart did not load a snapshot: {restored}"
    check_ledger(c, ledger)
    check_ledger(c, after)
    check_identical(c)
