"""Adding, re-adding and removing replicas by editing cluster.yaml, with state transfer, under write load."""
import copy
import os
import threading
import time

from crash_helpers import Ledger, Writers, check_identical, check_ledger, wait_healthy
from kvcluster import free_port, wait_until


def add_replica(cluster, rid):
    config = copy.deepcopy(cluster.config)
    config["replicas"].append({"id": rid, "host": "127.0.0.1", "port": free_port(), "data_dir": f"data/{rid}"})
    cluster.write_config(config)


def replica_state(cluster, rid):
    body = cluster.http("GET", "/status")[1]
    return next((r for r in body["replicas"] if r["id"] == rid), None), body


class Readers:
    """Reads random preloaded keys through nginx and notes which replica answered when."""

    def __init__(self, cluster, keys, threads=2):
        self.cluster, self.keys = cluster, keys
        self.stop_event = threading.Event()
        self.served = []  # (monotonic time, server)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, index):
        n = index
        while not self.stop_event.is_set() and n < 200_000:
            n += len(self.threads)
            status, body = self.cluster.http("GET", f"/kv/pre{(n * 7919) % self.keys}")
            assert status == 200, body
            with self.lock:
                self.served.append((time.monotonic(), body["server"]))

    def served_by(self, server):
        with self.lock:
            return sum(1 for _, who in self.served if who == server)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def test_add_a_fresh_replica_under_write_load(cluster):
    keys = 50_000
    cluster.preload(keys, key_format=b"pre%d")
    add_replica(cluster, "r4")
    cluster.start_replica("r4")
    assert cluster.stat("r4")["joined"] is False

    ledger = Ledger("add")
    writers = Writers(cluster, ledger, threads=4, max_ops=100_000, delete_ratio=0.2, seed=5).start()
    readers = Readers(cluster, keys).start()
    started = time.monotonic()
    status, body = cluster.reload_master()
    assert status == 200 and "syncing r4" in body["message"], body
    joined_at = {}
    unjoined_seen = {"t": started}

    def r4_joined():
        asked = time.monotonic()
        if cluster.stat("r4")["joined"]:
            joined_at["t"] = time.monotonic()
            return True
        unjoined_seen["t"] = asked  # r4 was out of sync during everything before this moment
        state, _ = replica_state(cluster, "r4")
        assert state["state"] in ("syncing", "up"), state
        if state["state"] == "syncing" and "sync" in state:
            progress.append(state["sync"])
        return False
    progress = []
    wait_until(r4_joined, 120, "r4 to finish its state transfer")
    # /status showed the transfer as it went: its phase, keys loaded of the source's total, the attempt.
    assert progress, "r4 was never seen syncing with its progress in /status"
    for sync in progress:
        assert {"phase", "loaded", "total", "attempt"} <= set(sync) and 0 <= sync["loaded"] <= sync["total"], sync
    assert any(sync["total"] >= keys for sync in progress), progress[-3:]
    assert any(sync["phase"].startswith(("copying from", "catching up", "verifying")) for sync in progress), progress
    sync_s = joined_at["t"] - started
    # r4 now serves reads and takes part in writes while the load goes on: wait until it has done some of both.
    writes_at_join = ledger.count()
    wait_until(lambda: readers.served_by("r4") >= 20 and ledger.count() >= writes_at_join + 100, 60,
               "r4 to serve reads and the writers to go on after it joined")
    writers.stop()
    readers.stop()
    print(f"r4 synced {keys} keys under load in {sync_s:.2f} s; {ledger.summary()}")

    # `joined` never goes back to false, so a read r4 answered before a stat that still said false is a read
    # served out of sync.
    early = [t for t, server in readers.served if server == "r4" and t < unjoined_seen["t"]]
    assert not early, f"r4 served {len(early)} reads before it was in sync"
    assert any(server == "r4" for _, server in readers.served), "r4 never served a read after joining"
    wait_healthy(cluster)
    state, body = replica_state(cluster, "r4")
    assert state["state"] == "up" and state["joined"] is True, state
    checked = check_ledger(cluster, ledger)
    stats = check_identical(cluster)
    assert stats["r4"]["keys"] >= keys
    status, body = cluster.http("GET", "/status?verify=1")
    assert status == 200 and body["verify"]["identical"] is True, body
    print(f"{checked} writes checked on r1-r4, {stats['r4']['keys']} keys identical")


def test_stale_replica_rejoins_after_removal(cluster):
    ledger = Ledger("stale")
    for i in range(200):
        assert cluster.http("PUT", f"/kv/old{i}", body=b"1")[0] == 200
    full = copy.deepcopy(cluster.config)
    reduced = copy.deepcopy(full)
    reduced["replicas"] = [r for r in reduced["replicas"] if r["id"] != "r3"]
    cluster.write_config(reduced)
    assert cluster.reload_master()[0] == 200
    cluster.stop_replica("r3")
    writers = Writers(cluster, ledger, threads=3, max_ops=60, delete_ratio=0.3, seed=9).start()
    wait_until(writers.finished, 60, "writers to finish")
    writers.stop()
    for i in range(0, 200, 2):
        assert cluster.http("DELETE", f"/kv/old{i}")[0] == 200
    cluster.write_config(full)  # r3 is back in the file; the master learns it only at the reload below
    cluster.start_replica("r3")
    assert cluster.stat("r3")["joined"] is True  # its own data looks fine to it, but it is stale
    status, body = cluster.reload_master()
    assert status == 200 and "syncing r3" in body["message"], body
    wait_until(lambda: replica_state(cluster, "r3")[0]["state"] == "up", 60, "r3 to be synced")
    wait_healthy(cluster)
    check_ledger(cluster, ledger)
    check_identical(cluster)
    assert cluster.wire("r3", ";get;old0;")[0]["code"] == "not_found"
    assert cluster.wire("r3", ";get;old1;")[0]["message"] == "1"


def test_wiped_replica_is_resynced_automatically(cluster):
    for i in range(300):
        assert cluster.http("PUT", f"/kv/w{i}", body=f"{i}".encode())[0] == 200
    cluster.kill_replica("r2")
    directory = os.path.join(os.path.dirname(cluster.config_path), "data", "r2")
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    cluster.start_replica("r2")
    assert cluster.stat("r2")["joined"] is False
    status, body = cluster.http("GET", "/kv/w7")
    assert status == 200 and body["server"] != "r2"
    wait_until(lambda: cluster.stat("r2")["joined"], 60, "r2 to be resynced")
    wait_healthy(cluster)
    check_identical(cluster)
    assert cluster.wire("r2", ";get;w7;")[0]["message"] == "7"


def test_reload_in_a_burst_of_writes_loses_nothing(cluster):
    ledger = Ledger("burst")
    writers = Writers(cluster, ledger, threads=6, max_ops=100_000, delete_ratio=0.2, seed=3).start()
    wait_until(lambda: ledger.count() >= 50, 30, "the writers to get going")
    config = copy.deepcopy(cluster.config)
    config["timeouts"] = {"prepare_timeout_ms": 2500}
    for _ in range(5):
        cluster.write_config(config)
        status, body = cluster.reload_master()
        assert status == 200, body
    config["replicas"] = [r for r in config["replicas"] if r["id"] != "r2"]
    cluster.write_config(config)
    assert cluster.reload_master()[0] == 200
    after_reloads = ledger.count()
    wait_until(lambda: ledger.count() >= after_reloads + 50, 30, "writes to go on after the last reload")
    writers.stop()
    assert ledger.count() > 0
    status, body = cluster.http("GET", "/status")
    assert body["config_epoch"] == 7, body["config_epoch"]
    wait_healthy(cluster)
    check_ledger(cluster, ledger)  # r1 and r3: every acknowledged write, nothing aborted
    check_identical(cluster)


def master_connections_to(cluster, port):
    """ESTABLISHED TCP connections the master process holds to `port` on loopback (from /proc)."""
    pid = cluster._pid("master")
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count


def test_read_connections_to_a_removed_replica_are_closed(cluster):
    """Worker threads keep read connections to every replica; once a reload drops a replica, the threads that
    serve reads close theirs to it, even while that replica is still running."""
    assert cluster.http("PUT", "/kv/rc", body=b"1")[0] == 200
    r3_port = int(cluster.replica("r3")["port"])
    for _ in range(60):
        assert cluster.http("GET", "/kv/rc")[0] == 200
    assert master_connections_to(cluster, r3_port) > 0
    reduced = copy.deepcopy(cluster.config)
    reduced["replicas"] = [r for r in reduced["replicas"] if r["id"] != "r3"]
    cluster.write_config(reduced)
    assert cluster.reload_master()[0] == 200

    def read_then_count():
        status, body = cluster.http("GET", "/kv/rc")
        assert status == 200 and body["server"] != "r3", body
        return master_connections_to(cluster, r3_port) == 0
    wait_until(read_then_count, 20, "the master to close its read connections to the removed r3")


def test_a_replica_put_back_while_the_master_was_down_is_synced_before_it_serves(cluster):
    """Who is in sync survives a master restart: a replica removed by a reload, still running with its old data,
    and put back into cluster.yaml while the master is stopped takes part only after a state transfer (the
    master used to take every configured replica in sync at start, so this one served its stale value)."""
    assert cluster.http("PUT", "/kv/k", body=b"old")[0] == 200
    full = copy.deepcopy(cluster.config)
    reduced = copy.deepcopy(full)
    reduced["replicas"] = [r for r in reduced["replicas"] if r["id"] != "r3"]
    cluster.write_config(reduced)
    assert cluster.reload_master()[0] == 200
    assert cluster.http("PUT", "/kv/k", body=b"new")[0] == 200
    cluster.stop_master()
    cluster.write_config(full)
    assert cluster.wire("r3", ";get;k;")[0]["message"] == "old"
    cluster.start_master()
    answers = set()
    for _ in range(60):
        status, body = cluster.http("GET", "/kv/k")
        assert status == 200, body
        answers.add((body["message"], body["server"]))
    assert {message for message, _ in answers} == {"new"}, answers
    wait_until(lambda: replica_state(cluster, "r3")[0]["state"] == "up", 60, "r3 to be synced")
    wait_healthy(cluster)
    check_identical(cluster)
    assert cluster.wire("r3", ";get;k;")[0]["message"] == "new"


def test_the_master_refuses_to_start_when_cluster_yaml_names_no_replica_in_sync(cluster):
    """Every replica moved to another data directory in the file: none holds what the master knows was
    committed, so it stops (exit 78, touching nothing) and says what to put back, instead of waiting forever
    for a state transfer that has no source."""
    assert cluster.http("PUT", "/kv/k", body=b"v")[0] == 200
    cluster.stop_master()
    full = copy.deepcopy(cluster.config)
    moved = copy.deepcopy(full)
    for replica in moved["replicas"]:
        replica["data_dir"] = f"data/elsewhere-{replica['id']}"
    cluster.write_config(moved)
    directory = os.path.join(os.path.dirname(cluster.config_path), "data", "master")
    before = open(os.path.join(directory, "master-state"), "rb").read()
    master = cluster._spawn("master", [os.path.join(cluster.bin_dir, "kv-master"), "--config", cluster.config_path])
    assert master.wait(timeout=30) == 78
    log = cluster.log("master")
    assert "names none of the replicas in sync" in log and "r1@127.0.0.1" in log, log[-2000:]
    assert open(os.path.join(directory, "master-state"), "rb").read() == before
    cluster.write_config(full)
    cluster.start_master()
    wait_healthy(cluster)
    assert cluster.http("PUT", "/kv/k", body=b"w")[0] == 200
    assert cluster.http("GET", "/kv/k")[1]["message"] == "w"


def test_replace_a_replica_at_a_new_address_as_the_guide_says(cluster):
    """OPERATIONS "Replace": keep the id, point host/port at the new machine, start it there with an empty
    data_dir, reload. The changed address makes the master sync it like an added replica before it takes part;
    the old process at the old address is out of the cluster."""
    for i in range(200):
        assert cluster.http("PUT", f"/kv/rep{i}", body=f"{i}".encode())[0] == 200
    cluster.stop_replica("r3")  # the old machine is gone
    config = copy.deepcopy(cluster.config)
    entry = next(r for r in config["replicas"] if r["id"] == "r3")
    entry["port"], entry["data_dir"] = free_port(), "data/r3-new"
    cluster.write_config(config)
    cluster.start_replica("r3")
    assert cluster.stat("r3")["joined"] is False, "an empty data directory neither votes nor serves"
    status, body = cluster.reload_master()
    assert status == 200 and "syncing r3" in body["message"], body
    wait_until(lambda: (replica_state(cluster, "r3")[0] or {}).get("state") == "up", 60, "r3 synced and up")
    state, _ = replica_state(cluster, "r3")
    assert state["joined"] is True and state["address"].endswith(f":{entry['port']}"), state
    wait_healthy(cluster)
    stats = check_identical(cluster)
    assert stats["r3"]["keys"] >= 200
    status, body = cluster.http("PUT", "/kv/after-replace", body=b"x")
    assert status == 200 and [r["server"] for r in body["replicas"]] == ["r1", "r2", "r3"], body
    assert cluster.wire("r3", ";get;rep7;")[0]["message"] == "7"


def test_a_commit_owed_to_a_removed_replica_is_kept_until_it_is_back_and_synced(unstarted_cluster):
    """OPERATIONS "Remove": a commit decided but not acknowledged by the removed replica stays in the decision
    log (pending_commits_for_removed), the master answers "committed" if asked about it, and once the replica is
    configured again and synced nothing is owed any more."""
    from crash_helpers import exit_code, start_cluster
    from helpers import ask_master as ask
    c = unstarted_cluster
    start_cluster(c, env_for={"r3": {"KV_FAILPOINTS": "replica-after-commit@3"}})
    seqs = []
    for n in range(50):
        status, body = c.http("PUT", f"/kv/owed{n}", body=b"v")
        if status == 200:
            seqs.append(body["seq"])
        if not c.is_running("r3"):
            break
    assert not c.is_running("r3") and exit_code(c, "r3") == 99, "r3 never hit replica-after-commit"
    wait_until(lambda: c.http("GET", "/status")[1]["pending_commits"] >= 1, 10, "a commit owed to r3")
    owed_seq = seqs[-1]

    original = copy.deepcopy(c.config)
    config = copy.deepcopy(original)
    config["replicas"] = [r for r in config["replicas"] if r["id"] != "r3"]
    c.write_config(config)
    assert c.reload_master()[0] == 200
    wait_until(lambda: c.http("GET", "/status")[1]["pending_commits_for_removed"] >= 1, 10,
               "the owed commit parked for the removed r3")
    assert ask(c, f"{owed_seq};qry;;")[0]["code"] == "committed"
    status, body = c.http("PUT", "/kv/without-r3", body=b"x")
    assert status == 200 and [r["server"] for r in body["replicas"]] == ["r1", "r2"], body

    c.write_config(original)
    c.start_replica("r3")
    assert c.reload_master()[0] == 200
    wait_until(lambda: (replica_state(c, "r3")[0] or {}).get("state") == "up", 60, "r3 back and synced")
    wait_until(lambda: c.http("GET", "/status")[1]["pending_commits_for_removed"] == 0
               and c.http("GET", "/status")[1]["pending_commits"] == 0, 20, "nothing owed once r3 is synced")
    wait_healthy(c)
    check_identical(c)
    assert c.wire("r3", ";get;without-r3;")[0]["message"] == "x"
