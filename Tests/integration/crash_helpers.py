"""Machinery shared by the crash-recovery tests (test_crash_recovery.py, test_crash_sigkill.py,
test_log_damage.py): a client-side ledger of writes and what the client learned about each, concurrent writer
threads, a bounded "wait until healthy", the checks that every replica agrees with the ledger, and helpers to
find and parse a replica's newest log file.

Harness additions that live here rather than in scripts/kvcluster.py (which these tests must not edit):
`start_cluster` (start with a failpoint env on one process), `exit_code` (a stopped process's exit status),
`restart`, `kill` and `data_dir`, and in `make_cluster` a retry of process start-up while a concurrent
`swift build` holds the binary open for writing (ETXTBSY).
"""
import errno
import http.client
import json
import os
import random
import re
import struct
import threading
import time

import kvcluster
from kvcluster import wait_until, wire_escape

ACK = "acknowledged"      # HTTP 200: committed everywhere (or durably decided and pending delivery)
ABORTED = "aborted"       # 409 / 503 / 404 on a delete: nothing was written
UNKNOWN = "unknown"       # connection error, timeout, 502/504 from nginx: may or may not have committed
UNEXPECTED = "unexpected"  # any other answer: reported as a failure


# ----- cluster control --------------------------------------------------------------------------------------

def make_cluster(tmp_path, **kwargs):
    """A generated (not yet started) cluster under tmp_path."""
    os.chmod(tmp_path, 0o755)  # nginx workers may run as another user
    cluster = kvcluster.Cluster.generate(str(tmp_path / "kv"), **kwargs)
    spawn = cluster._spawn

    def spawn_retrying(name, argv, env=None):
        # A concurrent `swift build` may be rewriting the binary (ETXTBSY): wait for the linker, bounded.
        deadline = time.monotonic() + 60
        while True:
            try:
                return spawn(name, argv, env)
            except OSError as exc:
                if exc.errno != errno.ETXTBSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    cluster._spawn = spawn_retrying
    return cluster


def start_cluster(cluster, env_for=None):
    """Starts every process; `env_for` maps a process name ("r1".., "master") to extra environment. Returns once
    GET /status shows every replica joined: a fresh cluster bootstraps before it takes writes."""
    env_for = env_for or {}
    for rid in cluster.replica_ids:
        cluster.start_replica(rid, env=env_for.get(rid), wait=False)
    for rid in cluster.replica_ids:
        cluster.wait_replica_ready(rid)
    cluster.start_master(env=env_for.get("master"))
    cluster.start_nginx()
    cluster.wait_cluster_ready()


def restart(cluster, name, env=None):
    if name == "master":
        cluster.start_master(env=env)
    else:
        cluster.start_replica(name, env=env)


def kill(cluster, name):
    if name == "master":
        cluster.kill_master()
    else:
        cluster.kill_replica(name)


def exit_code(cluster, name):
    """The exit status of the last process started under `name`, None while it runs."""
    proc = cluster.procs.get(name)
    return None if proc is None else proc.poll()


def data_dir(cluster, rid):
    path = cluster.replica(rid)["data_dir"]
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(cluster.config_path), path)


def log_tail(cluster, name, chars=2500):
    try:
        return cluster.log(name)[-chars:]
    except OSError as exc:
        return f"<no log: {exc}>"


# ----- the client's ledger ----------------------------------------------------------------------------------

class Op:
    __slots__ = ("kind", "key", "value", "outcome", "status", "seq", "detail")

    def __init__(self, kind, key, value):
        self.kind, self.key, self.value = kind, key, value
        self.outcome = self.status = self.seq = self.detail = None

    def __repr__(self):
        return (f"{self.kind} {self.key}={self.value!r} -> {self.outcome} (HTTP {self.status}, seq {self.seq}, "
                f"{self.detail})")


def classify(kind, status):
    if status == 200:
        return ACK
    if status in (409, 503) or (status == 404 and kind == "del"):
        return ABORTED
    if status in (502, 504):
        return UNKNOWN
    return UNEXPECTED


class Ledger:
    """Every write the client issued and what it learned. Keys are unique per put; a key is deleted at most
    once, and only after its put was acknowledged, so every key's expected state follows from its ops."""

    def __init__(self, tag):
        self.tag = tag
        self.lock = threading.Lock()
        self.ops = []

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def count(self):
        with self.lock:
            return len(self.ops)

    def snapshot(self):
        with self.lock:
            return list(self.ops)

    def acked(self):
        """How many writes so far were acknowledged (answered 200)."""
        with self.lock:
            return sum(1 for op in self.ops if op.outcome == ACK)

    def by_key(self):
        out = {}
        for op in self.snapshot():
            out.setdefault(op.key, []).append(op)
        return out

    def summary(self):
        counts = {}
        for op in self.snapshot():
            counts[(op.kind, op.outcome)] = counts.get((op.kind, op.outcome), 0) + 1
        return ", ".join(f"{k}/{o}: {n}" for (k, o), n in sorted(counts.items()))


class Writers:
    """`threads` client threads writing through nginx until stopped or `max_ops` each: puts of fresh unique
    keys, and deletes (ratio `delete_ratio`) of keys whose put this thread saw acknowledged."""

    def __init__(self, cluster, ledger, threads=4, max_ops=150, delete_ratio=0.25, seed=0, timeout_s=15):
        self.cluster, self.ledger = cluster, ledger
        self.max_ops, self.delete_ratio, self.seed, self.timeout_s = max_ops, delete_ratio, seed, timeout_s
        self.stop_event = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finished(self):
        return not any(t.is_alive() for t in self.threads)

    def stop(self, join_s=45):
        self.stop_event.set()
        deadline = time.monotonic() + join_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = [t for t in self.threads if t.is_alive()]
        assert not hung, f"{len(hung)} writer threads still blocked {join_s}s after stop"
        if self.errors:
            raise self.errors[0]

    def _run(self, index):
        try:
            rng = random.Random(self.seed * 1000 + index)
            mine = []
            for n in range(self.max_ops):
                if self.stop_event.is_set():
                    return
                if mine and rng.random() < self.delete_ratio:
                    key, _ = mine.pop(rng.randrange(len(mine)))
                    op = Op("del", key, None)
                else:
                    key = f"{self.ledger.tag}-t{index}-{n}"
                    op = Op("put", key, f"{self.ledger.tag}:{index}:{n}:{rng.getrandbits(32):08x}")
                self._issue(op)
                if op.kind == "put" and op.outcome == ACK:
                    mine.append((op.key, op.value))
                if op.outcome != ACK:
                    self.stop_event.wait(0.01)  # pace retries while something is down
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)

    def _issue(self, op):
        method = "PUT" if op.kind == "put" else "DELETE"
        body = op.value.encode() if op.kind == "put" else None
        try:
            status, reply = self.cluster.http(method, "/kv/" + op.key, body=body, timeout_s=self.timeout_s)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timeout, truncated reply
            op.outcome, op.detail = UNKNOWN, repr(exc)
            self.ledger.add(op)
            return
        op.status = status
        op.outcome = classify(op.kind, status)
        if isinstance(reply, dict):
            op.seq = reply.get("seq")
            op.detail = reply.get("message")
        if op.outcome == ACK and not isinstance(op.seq, int):
            op.outcome, op.detail = UNEXPECTED, f"200 without a seq: {reply}"
        self.ledger.add(op)


# ----- health and checks ------------------------------------------------------------------------------------

def wait_healthy(cluster, timeout_s=30):
    """Polls GET /status (and each replica's stat) until every replica is up, nothing is in doubt anywhere and
    the master has no commit left to deliver. Raises AssertionError with the last observation otherwise."""
    last = {}

    def healthy():
        for name in ["master", "nginx"] + cluster.replica_ids:
            if not cluster.is_running(name):
                raise AssertionError(f"{name} is not running (exit {exit_code(cluster, name)}); log:\n"
                                     f"{log_tail(cluster, name)}")
        try:
            status, body = cluster.http("GET", "/status", timeout_s=5)
        except (OSError, http.client.HTTPException) as exc:
            last["status"] = repr(exc)
            return False
        last["status"] = body
        if status != 200 or not isinstance(body, dict) or body.get("status") is not True:
            return False
        replicas = [r for r in body.get("replicas", []) if r.get("state") != "removed"]
        if len(replicas) != len(cluster.replica_ids):
            return False
        if not all(r.get("up") and r.get("in_doubt") == [] for r in replicas):
            return False
        if body.get("pending_commits", 0) != 0:
            return False
        stats = {}
        for rid in cluster.replica_ids:
            try:
                stats[rid] = cluster.stat(rid)
            except OSError as exc:
                stats[rid] = repr(exc)
        last["stats"] = stats
        return all(isinstance(s, dict) and s.get("in_doubt") == [] for s in stats.values())

    try:
        wait_until(healthy, timeout_s, "a healthy cluster")
    except TimeoutError:
        raise AssertionError(f"cluster not healthy after {timeout_s}s (a replica down, a transaction in doubt or "
                             f"a commit undelivered); last /status: {last.get('status')}; "
                             f"last stats: {last.get('stats')}") from None


def read_replica(cluster, rid, keys, chunk=200):
    """key -> (value, seq) or None, read directly from replica `rid` (pipelined `;get;key;`). A key that does not
    answer found/not_found (e.g. still locked: timeout) fails the test."""
    out = {}
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        replies = cluster.wire(rid, *[b";get;" + wire_escape(k) + b";" for k in part])
        for key, reply in zip(part, replies):
            if reply.get("status"):
                out[key] = (reply["message"], reply["seq"])
            elif reply.get("code") == "not_found":
                out[key] = None
            else:
                raise AssertionError(f"{rid}: get {key!r} answered {reply} (still locked?)")
    return out


def expected_states(ops):
    """The states a key may be in given its ops: a list of predicates over (value, seq) | None, with labels."""
    put = ops[0]
    assert put.kind == "put" and all(op.kind == "del" for op in ops[1:]) and len(ops) <= 2, ops
    present = ("present", lambda got: got is not None and got[0] == put.value
               and (put.outcome != ACK or got[1] == put.seq))
    absent = ("absent", lambda got: got is None)
    if put.outcome == ABORTED:
        return [absent]
    if put.outcome == UNKNOWN:
        return [absent, present]
    assert put.outcome == ACK, put
    if len(ops) == 1:
        return [present]
    delete = ops[1]
    if delete.outcome == ACK:
        return [absent]
    if delete.outcome == ABORTED:
        return [present]
    return [absent, present]


def check_ledger(cluster, ledger):
    """Every replica agrees with the client's ledger, and with each other, on every key the ledger wrote.
    Returns the number of ops checked."""
    by_key = ledger.by_key()
    unexpected = [op for ops in by_key.values() for op in ops if op.outcome == UNEXPECTED]
    assert not unexpected, f"unexpected answers: {unexpected[:10]}"
    keys = sorted(by_key)
    encoded = [k.encode() for k in keys]
    contents = {rid: read_replica(cluster, rid, encoded) for rid in cluster.replica_ids}
    failures = []
    for key, raw in zip(keys, encoded):
        views = {rid: contents[rid][raw] for rid in cluster.replica_ids}
        if len(set(views.values())) != 1:
            failures.append(f"{key}: replicas differ {views}; ops {by_key[key]}")
            continue
        got = next(iter(views.values()))
        allowed = expected_states(by_key[key])
        if not any(pred(got) for _, pred in allowed):
            failures.append(f"{key}: all replicas hold {got}, expected {'/'.join(l for l, _ in allowed)}; "
                            f"ops {by_key[key]}")
    assert not failures, f"{len(failures)} keys wrong ({ledger.summary()}):\n" + "\n".join(failures[:25])
    return sum(len(ops) for ops in by_key.values())


def check_identical(cluster):
    """Every replica reports the same content digest and key count, and nothing in doubt."""
    stats = {rid: cluster.stat(rid) for rid in cluster.replica_ids}
    for rid, s in stats.items():
        assert s["in_doubt"] == [], f"{rid} still has in-doubt transactions: {s['in_doubt']}"
    assert len({(s["digest"], s["keys"]) for s in stats.values()}) == 1, \
        "replicas diverged: " + ", ".join(f"{rid}: {s['keys']} keys digest {s['digest']}" for rid, s in stats.items())
    return stats


def fresh_puts(cluster, keys, tag, threads=4):
    """A new put to every key must commit (no key is left locked), and every replica then holds it."""
    keys = sorted(keys)
    results = {}
    lock = threading.Lock()

    def work(i):
        for key in keys[i::threads]:
            try:
                status, body = cluster.http("PUT", "/kv/" + key, body=f"fresh-{tag}-{key}".encode(), timeout_s=15)
            except (OSError, http.client.HTTPException) as exc:
                status, body = None, repr(exc)
            with lock:
                results[key] = (status, body)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert len(results) == len(keys), "fresh puts did not finish"
    failed = {k: v for k, v in results.items() if v[0] != 200}
    assert not failed, f"{len(failed)} fresh puts failed (key left locked?): {list(failed.items())[:10]}"
    encoded = [k.encode() for k in keys]
    for rid in cluster.replica_ids:
        got = read_replica(cluster, rid, encoded)
        wrong = {k: v for k, v in got.items() if v is None or v[0] != f"fresh-{tag}-{k.decode()}"}
        assert not wrong, f"{rid} lacks fresh puts: {list(wrong.items())[:10]}"
    check_identical(cluster)


# ----- replica log files ------------------------------------------------------------------------------------

LOG_MAGIC_BYTES = 8
FRAME_HEADER = struct.Struct("<II")
BATCH_HEADER = struct.Struct("<III")  # tag "KVB1", body length, CRC-32C of tag and length
BATCH_TAG = 0x3142564B


def newest_log(directory):
    """The replica log that receives appends: the newest `wal-<generation>.log` segment by generation number if
    the directory has segments, else the single-file layout's `replica.log`."""
    segments = []
    for name in os.listdir(directory):
        m = re.fullmatch(r"wal-(\d+)\.log", name)
        if m:
            segments.append((int(m.group(1)), name))
    if segments:
        return os.path.join(directory, max(segments)[1])
    legacy = os.path.join(directory, "replica.log")
    if os.path.exists(legacy):
        return legacy
    raise FileNotFoundError(f"no replica log (wal-*.log or replica.log) in {directory}: {os.listdir(directory)}")


def log_frames(path):
    """[(offset, payload_length)] of the records' frames, stopping at the first damaged one. A `KVLOG02` log holds
    batches (one per write) of frames; a `KVLOG01` log holds frames alone."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:5] == b"KVLOG", f"{path} does not start with a KVLOG magic: {data[:8]!r}"

    def frames_in(offset, end, out):
        while offset + FRAME_HEADER.size <= end:
            length, _ = FRAME_HEADER.unpack_from(data, offset)
            if length == 0 or offset + FRAME_HEADER.size + length > end:
                return False
            out.append((offset, length))
            offset += FRAME_HEADER.size + length
        return offset == end

    frames = []
    if data[:8] == b"KVLOG01\n":
        frames_in(LOG_MAGIC_BYTES, len(data), frames)
        return frames
    offset = LOG_MAGIC_BYTES
    while offset + BATCH_HEADER.size <= len(data):
        tag, length, _ = BATCH_HEADER.unpack_from(data, offset)
        end = offset + BATCH_HEADER.size + length
        if tag != BATCH_TAG or length == 0 or end > len(data):
            break
        if not frames_in(offset + BATCH_HEADER.size, end, frames):
            break
        offset = end
    return frames


class ContendedWriters:
    """Writers that contend, for the crash tests (whose `Writers` use a fresh key per put): `cas_threads` threads
    increment one counter key by compare-and-swap (GET, then PUT with If-Match on the version read), and one
    thread writes pairs of fresh keys in one transaction (POST /txn). `check` then holds them to what SIGKILL
    may not break: the counter equals the increments that committed (at least those acknowledged, at most those
    acknowledged or of unknown outcome: none lost, none applied twice), and each pair is both there with its
    value or both absent (present when acknowledged)."""

    def __init__(self, cluster, tag, cas_threads=2, max_ops=150, timeout_s=15):
        self.cluster, self.tag, self.max_ops, self.timeout_s = cluster, tag, max_ops, timeout_s
        self.counter = f"{tag}-counter"
        self.lock = threading.Lock()
        self.increments = {ACK: 0, ABORTED: 0, UNKNOWN: 0}
        self.pairs = []  # (key a, key b, value, outcome)
        self.stop_event = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._guard, args=(self._increment,), daemon=True)
                        for _ in range(cas_threads)]
        self.threads.append(threading.Thread(target=self._guard, args=(self._pair,), daemon=True))

    def start(self):
        status, _ = self.cluster.http("PUT", "/kv/" + self.counter, body=b"0", timeout_s=self.timeout_s)
        assert status == 200, status
        for t in self.threads:
            t.start()
        return self

    def stop(self, join_s=45):
        self.stop_event.set()
        deadline = time.monotonic() + join_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a contended writer is still blocked after stop"
        if self.errors:
            raise self.errors[0]

    def _guard(self, body):
        try:
            for n in range(self.max_ops):
                if self.stop_event.is_set():
                    return
                if not body(n):
                    self.stop_event.wait(0.01)
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)

    def _call(self, method, path, body=None, headers=None):
        try:
            return self.cluster.http(method, path, body=body, headers=headers, timeout_s=self.timeout_s)
        except (OSError, ValueError, http.client.HTTPException):
            return None, {}

    @staticmethod
    def _outcome(status):
        if status == 200:
            return ACK
        return ABORTED if status in (409, 412, 503) else UNKNOWN

    def _increment(self, n):
        status, body = self._call("GET", "/kv/" + self.counter)
        if status != 200:
            return False
        value, version = int(body["message"]), body["seq"]
        status, _ = self._call("PUT", "/kv/" + self.counter, body=str(value + 1).encode(),
                               headers={"If-Match": str(version)})
        outcome = self._outcome(status)
        with self.lock:
            self.increments[outcome] += 1
        return outcome == ACK

    def _pair(self, n):
        a, b, value = f"{self.tag}-pair{n}-a", f"{self.tag}-pair{n}-b", f"{self.tag}:{n}"
        spec = {"success": [{"op": "put", "key": a, "value": value}, {"op": "put", "key": b, "value": value}]}
        status, body = self._call("POST", "/txn", body=json.dumps(spec).encode(),
                                  headers={"Content-Type": "application/json"})
        outcome = self._outcome(status)
        assert outcome != ACK or body.get("succeeded") is True, body
        with self.lock:
            self.pairs.append((a, b, value, outcome))
        return outcome == ACK

    def check(self):
        """Asserts the two rules above on the settled cluster; returns a summary line."""
        status, body = self.cluster.http("GET", "/kv/" + self.counter)
        assert status == 200, body
        final = int(body["message"])
        acked, unknown = self.increments[ACK], self.increments[UNKNOWN]
        assert acked <= final <= acked + unknown, (
            f"counter {final} after {acked} acknowledged and {unknown} unknown increments: "
            f"{'an acknowledged increment was lost' if final < acked else 'an increment was applied twice'}")
        broken = []
        for a, b, value, outcome in self.pairs:
            got = [self.cluster.http("GET", "/kv/" + key) for key in (a, b)]
            present = [s == 200 and r.get("message") == value for s, r in got]
            absent = [s == 404 for s, _ in got]
            if not (all(present) or all(absent)) or (outcome == ACK and not all(present)) \
                    or (outcome == ABORTED and not all(absent)):
                broken.append((a, outcome, got))
        assert not broken, f"{len(broken)} transactions not atomic or not as answered: {broken[:5]}"
        return (f"counter {final} ({acked} acknowledged, {unknown} unknown, {self.increments[ABORTED]} refused "
                f"increments); {len(self.pairs)} pair transactions")
