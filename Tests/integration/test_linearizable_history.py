"""A real history is linearizable: concurrent HTTP clients put, get and delete a handful of hot keys through
nginx while replicas are killed, stopped and restarted and the master is SIGKILLed and started again; every invocation and completion is recorded with
time.monotonic and checked with linearizability.py (Knossos/Porcupine-style WGL search, per key).

Classification of answers (README): 200 ok; 404 on GET = absent (None); 404 on DELETE = ok, "did not exist";
409/503 on a write = failed, nothing written (the API says retrying is safe); 502/504, timeouts and connection
errors = unknown (may take effect at any time, or never); a GET that fails says nothing and is dropped. Some
writes are sent with a very short client timeout on purpose, so that unknown outcomes occur while everything
is up and the checker has to place them. Every written value is unique.
"""
import collections
import copy
import http.client
import random
import threading
import time

from crash_helpers import check_identical, make_cluster, wait_healthy
from linearizability import CAS, DELETE, GET, PUT, History, check

KEYS = ["hot-a", "hot-b", "hot-c", "hot-d"]
CLIENTS = 8
RUN_S = 13.0
MAX_OPS_PER_CLIENT = 5000
# Each client starts at most this many operations per second, so the history's size (and the checker's search)
# does not grow with the server's speed: unpaced, a faster server made histories the checker's step budget could
# not always prove a planted stale read wrong in.
OPS_PER_S_PER_CLIENT = 100
TIMEOUT_S = 10.0            # above every server-side timeout: these requests get an answer
SHORT_TIMEOUT_RATIO = 0.05  # writes sent with a 2-30 ms timeout: outcome unknown
BACKOFF_S = 0.1  # a client's pause after an answer of unknown outcome (502/504, time-out)
# (seconds after the start, action, process): SIGKILL r2 and bring it back; SIGTERM r3 and bring it back; SIGKILL
# the master amid CAS and plain writes to the hot keys and start it again (its undecided writes are unknowns).
CHAOS = [(2.0, "kill", "r2"), (4.5, "start", "r2"), (7.5, "stop", "r3"), (9.5, "start", "r3"),
         (10.5, "kill", "master"), (11.0, "start", "master")]
# Compare-and-swap: PUT with If-Match: <version seen by this client's last read>; 412 on a version mismatch.
CAS_RATIO = 0.15


class Client(threading.Thread):
    def __init__(self, index, cluster, history, stop, counts, lock):
        super().__init__(daemon=True, name=f"lin-client-{index}")
        self.name_, self.cluster, self.history, self.stop = f"c{index}", cluster, history, stop
        self.rng = random.Random(1000 + index)
        self.counts, self.lock = counts, lock
        self.seen_version = {}  # key -> seq of this client's last successful read (for CAS)
        self.error = None

    def run(self):
        try:
            started = time.monotonic()
            for n in range(MAX_OPS_PER_CLIENT):
                # Pacing, not synchronisation: wait for this operation's slot (returns at once when behind).
                if self.stop.wait(max(0.0, started + n / OPS_PER_S_PER_CLIENT - time.monotonic())):
                    return
                key, r = self.rng.choice(KEYS), self.rng.random()
                if r < CAS_RATIO and key in self.seen_version:
                    self.cas(key, self.seen_version[key], f"{self.name_}-{n}")
                elif r < 0.45:
                    self.get(key)
                elif r < 0.85:
                    self.put(key, f"{self.name_}-{n}")
                else:
                    self.delete(key)
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def request(self, op, method, key, body=None, headers=None, write=False):
        timeout = TIMEOUT_S
        if write and self.rng.random() < SHORT_TIMEOUT_RATIO:
            timeout = self.rng.uniform(0.002, 0.03)
        try:
            status, reply = self.cluster.http(method, "/kv/" + key, body=body, headers=headers, timeout_s=timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.history.unknown(op)
            self.count(op.kind, type(exc).__name__)
            self.stop.wait(BACKOFF_S)
            return None, None
        self.count(op.kind, status)
        if status in (502, 504):
            # As a client would: while the master is down, nginx answers at once, and a client going on at full
            # pace would fill the history with unknowns no search can place.
            self.stop.wait(BACKOFF_S)
        return status, reply if isinstance(reply, dict) else {}

    def count(self, kind, what):
        with self.lock:
            self.counts[(kind, what)] += 1

    def write_failed(self, op, status):
        """409/503: nothing written. 502/504 and anything unexpected: unknown (counted, printed)."""
        if status in (409, 503):
            self.history.fail(op)
        else:
            self.history.unknown(op)

    def get(self, key):
        op = self.history.invoke(self.name_, GET, key)
        status, reply = self.request(op, "GET", key)
        if status == 200:
            assert reply.get("encoding") is None, reply  # our values are ASCII
            self.history.ok(op, reply["message"], seq=reply.get("seq"))
            self.seen_version[key] = reply.get("seq")
        elif status == 404:
            self.history.ok(op, None)
            self.seen_version[key] = 0
        elif status is not None:
            self.history.fail(op)  # a read without an answer says nothing

    def put(self, key, value):
        op = self.history.invoke(self.name_, PUT, key, value=value)
        status, reply = self.request(op, "PUT", key, body=value.encode(), write=True)
        if status == 200:
            self.history.ok(op, seq=reply.get("seq"))
        elif status is not None:
            self.write_failed(op, status)

    def delete(self, key):
        op = self.history.invoke(self.name_, DELETE, key)
        status, reply = self.request(op, "DELETE", key, write=True)
        if status in (200, 404):
            self.history.ok(op, status == 200)
        elif status is not None:
            self.write_failed(op, status)

    def cas(self, key, version, value):
        """PUT with If-Match (chosen with probability CAS_RATIO). 200 = swapped (output True, with its
        seq); 412 = the version did not match (output False: nothing written, but the compare is an observation);
        409/503 = failed; the rest unknown. The checker translates versions to values (see linearizability.py)."""
        op = self.history.invoke(self.name_, CAS, key, value=value, expected=version, by_version=True)
        status, reply = self.request(op, "PUT", key, body=value.encode(), headers={"If-Match": str(version)},
                                     write=True)
        if status == 200:
            self.history.ok(op, True, seq=reply.get("seq"))
        elif status == 412:
            self.history.ok(op, False)
        elif status is not None:
            self.write_failed(op, status)


def assert_checker_sees_a_stale_final_read(history):
    """The checker is not vacuous on this very history: a final read answering the value of a put that another
    acknowledged write superseded in real time (both completed before the read began) must be rejected."""
    finals = [op for op in history.ops if op.client == "c99" and op.outcome == "ok"]
    for final in finals:
        writes = [op for op in history.ops if op.key == final.key and op.kind in (PUT, DELETE) and op.outcome == "ok"
                  and op.ret < final.call]
        for old in (op for op in writes if op.kind == PUT and op.value != final.output):
            if any(w.call > old.ret for w in writes):
                stale = copy.copy(final)
                stale.output, stale.seq = old.value, old.seq
                started = time.monotonic()
                result = check([op for op in history.ops if op is not final] + [stale], time_budget_s=60)
                assert result.linearizable is False, f"a stale read was not caught: {stale.describe()}\n{result}"
                print(f"sanity: a stale final read is rejected in {time.monotonic() - started:.2f}s: {result}")
                return
    raise AssertionError("no acknowledged write was superseded: the run did too little to check anything")


def test_concurrent_history_with_replica_and_master_restarts_is_linearizable(tmp_path):
    cluster = make_cluster(tmp_path)
    history, stop, lock = History(), threading.Event(), threading.Lock()
    counts = collections.Counter()
    try:
        cluster.start()
        clients = [Client(i, cluster, history, stop, counts, lock) for i in range(CLIENTS)]
        started = time.monotonic()
        for c in clients:
            c.start()
        timeline = []
        try:
            for at, action, rid in CHAOS:
                stop.wait(max(0.0, started + at - time.monotonic()))
                if rid == "master":
                    {"kill": cluster.kill_master, "start": cluster.start_master}[action]()
                else:
                    {"kill": cluster.kill_replica, "stop": cluster.stop_replica, "start": cluster.start_replica}[action](rid)
                timeline.append(f"{time.monotonic() - started:.2f}s {action} {rid}")
            stop.wait(max(0.0, started + RUN_S - time.monotonic()))
        finally:
            stop.set()
            for c in clients:
                c.join(TIMEOUT_S + 20)
        assert not any(c.is_alive() for c in clients), "a client is still blocked after the run"
        errors = [c.error for c in clients if c.error]
        if errors:
            raise errors[0]
        run_s = time.monotonic() - started

        # Once healthy, every key is read once more: the final state must fit the history too.
        wait_healthy(cluster, timeout_s=60)
        final = Client(99, cluster, history, stop, counts, lock)
        for key in KEYS:
            final.get(key)
        check_identical(cluster)

        print(f"run {run_s:.1f}s, chaos: {timeline}")
        print("answers: " + ", ".join(f"{k} {w}: {n}" for (k, w), n in sorted(counts.items(), key=str)))
        result = check(history, time_budget_s=120)
        print(result)
        print(f"operations checked: {result.ops_checked} of {result.ops_total} recorded "
              f"({result.ops_total - result.ops_checked} failed writes, unanswered reads and unobserved unknowns)")
        assert result.linearizable is True, str(result)
        unknown = [op for op in history.ops if op.kind == PUT and op.outcome == "unknown"]
        read = {op.output for op in history.ops if op.kind == GET and op.outcome == "ok"}
        print(f"unknown-outcome puts: {len(unknown)}, of which later read: {sum(op.value in read for op in unknown)}")
        assert_checker_sees_a_stale_final_read(history)
        by_outcome = collections.Counter((op.kind, op.outcome) for op in history.ops)
        assert by_outcome[(PUT, "ok")] > 100 and by_outcome[(GET, "ok")] > 100, by_outcome
        assert by_outcome[(DELETE, "ok")] > 10, by_outcome
        assert by_outcome[(CAS, "ok")] > 10, by_outcome
        # The master's SIGKILL landed amid the writes: some were cut off (nginx answered 502 for them).
        assert any(what == 502 for (_, what) in counts), counts
    finally:
        stop.set()
        cluster.kill_all()
