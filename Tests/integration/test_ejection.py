"""Ejection (availability.eject_after_ms): writes survive a failed replica. With it on, a replica killed under load
costs at most eject_after_ms + 1 s of 503s, then writes answer 200 without it (listing it as `ejected`); once it is
back it is resynced by a state transfer and rejoins with an identical digest; a replica that was only paused
(SIGSTOP) is ejected the same way and, after SIGCONT, rejoins only through a resync. The whole history of each run
is checked for linearizability."""
import http.client
import threading
import time

import pytest

from crash_helpers import check_identical, wait_healthy
from helpers import running_cluster
from kvcluster import wait_until
from linearizability import GET, PUT, History, check

EJECT_AFTER_MS = 1000
WRITERS = 4


@pytest.fixture
def cluster(tmp_path):
    with running_cluster(tmp_path, availability={"eject_after_ms": EJECT_AFTER_MS},
                         timeouts={"prepare_timeout_ms": 500, "commit_timeout_ms": 500}) as c:
        yield c


class Load:
    """WRITERS threads, each putting unique values to keys of its own and reading them back, every operation in one
    History; each answer's (time, status, ejected list) is kept for the 503 window. Bounded by `stop` and a cap."""

    def __init__(self, cluster, max_ops=20_000):
        self.cluster, self.history, self.lock = cluster, History(), threading.Lock()
        self.stop, self.answers, self.max_ops = threading.Event(), [], max_ops
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(WRITERS)]
        self.errors = []

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "a writer is still blocked"

    def run(self, i):
        try:
            for n in range(self.max_ops // WRITERS):
                if self.stop.is_set():
                    return
                key = f"w{i}-{n % 4}"
                self.put(f"c{i}", key, f"c{i}-{n}")
                if n % 3 == 0:
                    self.get(f"c{i}", key)
        except Exception as exc:  # surfaced by the test
            self.errors.append(exc)

    def put(self, client, key, value):
        with self.lock:
            op = self.history.invoke(client, PUT, key, value=value)
        started = time.monotonic()
        try:
            status, body = self.cluster.http("PUT", "/kv/" + key, body=value.encode(), timeout_s=10)
        except (OSError, http.client.HTTPException):
            status, body = None, None
        with self.lock:
            if status == 200:
                self.history.ok(op, seq=body.get("seq"))
            elif status in (409, 503):
                self.history.fail(op)
            else:
                self.history.unknown(op)
            ejected = body.get("ejected", []) if isinstance(body, dict) else []
            self.answers.append((started, time.monotonic(), status, ejected))

    def get(self, client, key):
        with self.lock:
            op = self.history.invoke(client, GET, key)
        try:
            status, body = self.cluster.http("GET", "/kv/" + key, timeout_s=10)
        except (OSError, http.client.HTTPException):
            return  # an unanswered read says nothing
        with self.lock:
            if status == 200:
                self.history.ok(op, output=body["message"], seq=body.get("seq"))
            elif status == 404:
                self.history.ok(op, output=None)

    def committed_without(self, rid):
        with self.lock:
            return sum(a[2] == 200 and rid in a[3] for a in self.answers)

    def writes_between(self, start, end):
        with self.lock:
            return [a for a in self.answers if start <= a[0] < end]


def replica_state(cluster, rid):
    status, body = cluster.http("GET", "/status", timeout_s=10)
    return next(r for r in body["replicas"] if r["id"] == rid), body


def assert_linearizable(history):
    result = check(history, time_budget_s=120)
    print(result)
    assert result.linearizable is True, str(result)
    assert result.ops_checked > 200, result.ops_checked


def test_a_killed_replica_is_ejected_then_resynced_and_writes_go_on(cluster):
    c = cluster
    before = c.stat("r2")["joined_since"]
    with Load(c) as load:
        wait_until(lambda: len(load.writes_between(0, time.monotonic())) > 100, 30, "the load to start")
        killed = time.monotonic()
        c.kill_replica("r2")
        # Writes started after eject_after_ms + 1 s all commit without r2, until it is back.
        wait_until(lambda: replica_state(c, "r2")[0]["state"] == "ejected", 10, "r2 to be ejected")
        # A stretch of load with r2 ejected, past the allowed window (measured below).
        wait_until(lambda: time.monotonic() > killed + EJECT_AFTER_MS / 1000 + 2.0
                   and load.committed_without("r2") >= 100, 30, "writes to commit without r2")
        restarted = time.monotonic()
        c.start_replica("r2")
        wait_until(lambda: replica_state(c, "r2")[0]["state"] == "up", 60, "r2 to rejoin")
        rejoined = time.monotonic()
        wait_until(lambda: len(load.writes_between(rejoined, time.monotonic())) >= 20, 30, "writes with r2 back")
    assert not load.errors, load.errors[0]
    during = load.writes_between(killed, restarted)
    failed = [a for a in during if a[2] != 200]
    window = max((a[1] for a in failed), default=killed) - killed
    print(f"SIGKILL of r2 under load: 503 for {window:.2f}s ({len(failed)} writes), then "
          f"{sum(a[2] == 200 for a in during)} writes answered 200 without it; rejoined "
          f"{rejoined - restarted:.2f}s after its restart")
    assert window <= EJECT_AFTER_MS / 1000 + 1.0, (window, failed[-5:])
    late = load.writes_between(killed + EJECT_AFTER_MS / 1000 + 1.0, restarted)
    assert late and all(a[2] == 200 for a in late), [a for a in late if a[2] != 200][:5]
    assert any(a[3] == ["r2"] for a in late), "write answers list the ejected replica"

    state, status = replica_state(c, "r2")
    ejections = status["availability"]["ejections"]
    assert ejections and ejections[0]["replica"] == "r2" and ejections[0]["reason"] and ejections[0]["at"], status
    assert "ejected r2 after" in c.log("master") and "r2 rejoined after its resync" in c.log("master")
    wait_healthy(c)
    check_identical(c)
    assert c.stat("r2")["joined_since"] > before, "r2 came back through a state transfer's join"
    assert_linearizable(load.history)


def test_a_paused_replica_is_ejected_and_rejoins_only_through_a_resync(cluster):
    c = cluster
    before = c.stat("r3")["joined_since"]
    with Load(c) as load:
        wait_until(lambda: len(load.writes_between(0, time.monotonic())) > 100, 30, "the load to start")
        c.pause("r3")
        try:
            wait_until(lambda: replica_state(c, "r3")[0]["state"] == "ejected", 15, "r3 to be ejected")
            assert c.http("PUT", "/kv/while-paused", body=b"written without r3")[0] == 200
        finally:
            c.resume("r3")
        # Awake again, it answers at once, but it takes part only once a transfer has synced it: whenever
        # /status shows it up, its join is a new one.
        def rejoined():
            state, _ = replica_state(c, "r3")
            if state["state"] == "up":
                assert state["joined_since"] > before, f"r3 is up without a new join: {state}"
                return True
            return False
        wait_until(rejoined, 60, "r3 to rejoin")
        back = time.monotonic()
        wait_until(lambda: len(load.writes_between(back, time.monotonic())) >= 20, 30, "writes with r3 back")
    assert not load.errors, load.errors[0]
    master_log = c.log("master")
    assert master_log.index("ejected r3 after") < master_log.index("r3 is in sync ("), master_log[-3000:]
    wait_healthy(c)
    check_identical(c)
    assert c.wire("r3", ";get;while-paused;")[0]["message"] == "written without r3"
    assert_linearizable(load.history)
