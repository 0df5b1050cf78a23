#!/usr/bin/env python3
"""kv vs etcd 3.4, side by side on loopback, driven by wrk (issue 7). Run it through bench/run.sh, which
installs the Debian packages and builds the release binaries first; see docs/PERFORMANCE.md.

Modes:
  compare  kv (nginx + kv-master + 3 replicas, fsync on, the repository's cluster.yaml settings) against a
           3-node etcd (Debian's etcd-server, defaults: fsync on) and the ceiling GET /ping through the same
           nginx: put and get at each --connections, runs of the systems alternating, --rounds rounds.
  growth   the same put/get runs for value sizes (--growth-values) and key counts (--growth-keys), a fresh
           pair of clusters per point; tables (and a PNG plot when matplotlib is importable).
  all      compare, then growth.

Every process it starts (replicas, master, nginx and its workers, etcd nodes, wrk) is stopped by PID at the
end, also on failure, Ctrl-C or SIGTERM. Results: bench/results/<mode>-<UTC timestamp>.{md,json}.
"""
import argparse
import base64
import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import kvcluster  # noqa: E402  (scripts/kvcluster.py: cluster control shared with the tests)

LUA_DIR = os.path.join(BENCH, "lua")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP = threading.Event()  # set on Ctrl-C / SIGTERM: preload workers stop after their current request


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def on_signal(signum, _frame):
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


# ----- processes we started: identity, memory, CPU ---------------------------------------------------------------

def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (index 0 = state), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


class Proc:
    """A process this harness started (directly or as nginx's worker), pinned by PID and start time so a reused
    PID is never mistaken for it."""

    def __init__(self, name, group, pid):
        self.name, self.group, self.pid = name, group, pid
        fields = _stat_fields(pid)
        self.starttime = fields[19] if fields else None

    def alive(self):
        fields = _stat_fields(self.pid)
        return fields is not None and fields[19] == self.starttime and fields[0] != "Z"

    def cpu_ticks(self):
        fields = _stat_fields(self.pid)
        if fields is None or fields[19] != self.starttime:
            return None
        return int(fields[11]) + int(fields[12])  # utime + stime

    def memory_kb(self):
        """(VmHWM, VmRSS) in kB."""
        out = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmHWM:", "VmRSS:")):
                        key, value = line.split(":", 1)
                        out[key] = int(value.split()[0])
        except OSError:
            return None
        if not self.alive():
            return None
        return out.get("VmHWM", 0), out.get("VmRSS", 0)

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[1] == str(pid):
                kids.append(int(entry))
    return kids


class Monitor(threading.Thread):
    """Samples VmHWM/VmRSS of every registered process every `interval_s` and keeps each one's peak."""

    def __init__(self, interval_s=0.5):
        super().__init__(daemon=True, name="rss-monitor")
        self.interval_s = interval_s
        self.procs = []
        self.peak_kb = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, proc):
        with self.lock:
            self.procs.append(proc)
        self.sample_one(proc)

    def sample_one(self, proc):
        mem = proc.memory_kb()
        if mem:
            with self.lock:
                self.peak_kb[proc.name] = max(self.peak_kb.get(proc.name, 0), mem[0], mem[1])

    def sample(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            self.sample_one(p)

    def run(self):
        while not self.done.wait(self.interval_s):
            self.sample()

    def group_ticks(self):
        totals = {}
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            ticks = p.cpu_ticks()
            if ticks is not None:
                totals[p.group] = totals.get(p.group, 0) + ticks
        return totals


def machine_ticks():
    """Machine-wide CPU ticks from /proc/stat: busy (not idle or iowait, steal included), irq + softirq (loopback
    networking is mostly softirq, charged to no process), steal (time the hypervisor gave to other guests)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]] + [0] * 8
    return {"busy": sum(values[:8]) - values[3] - values[4], "irq": values[5] + values[6], "steal": values[7]}


# ----- kv ---------------------------------------------------------------------------------------------------------

def join_fresh_replica(client, rid):
    """A fresh replica is out of sync and refuses prepares until it joins; with no master running, do what the
    master's bootstrap of a new cluster does (`;join;;` on every replica, all empty hence identical). Binaries
    from before state transfer answer bad_request to `join` and take writes at once."""
    reply = client.call(b";join;;")[0]
    if not reply.get("status") and reply.get("code") != "bad_request":
        raise RuntimeError(f"wire preload: {rid} refused to join: {reply}")


class KvSystem:
    """Our cluster: kvcluster.Cluster on free loopback ports with the repository's cluster.yaml settings."""

    name = "kv"

    def __init__(self, root, monitor, tag="", link_tls=False):
        import yaml
        with open(os.path.join(REPO, "cluster.yaml")) as f:
            shipped = yaml.safe_load(f)
        self.cluster = kvcluster.Cluster.generate(
            root, replicas=len(shipped["replicas"]), timeouts=shipped.get("timeouts"), limits=shipped.get("limits"),
            storage=shipped.get("storage"), worker_threads=shipped["master"].get("worker_threads", 96),
            link_tls=link_tls)
        self.monitor = monitor
        self.tag = tag
        self.procs = []
        self.preload_retries = 0
        self.preload_first_failure = ""

    @property
    def url(self):
        return f"http://127.0.0.1:{self.cluster.http_port}"

    def _register(self, name):
        proc = self.cluster.procs[name]
        p = Proc(f"{self.tag}kv-{name}" if name != "master" else f"{self.tag}kv-master", "kv", proc.pid)
        self.procs.append(p)
        self.monitor.add(p)

    def start(self, keys, value_bytes, preload, clients):
        c = self.cluster
        for rid in c.replica_ids:
            c.start_replica(rid, wait=False)
            self._register(rid)
        for rid in c.replica_ids:
            c.wait_replica_ready(rid)
        t0 = time.monotonic()
        if preload == "wire":
            self.preload_wire(keys, value_bytes)
        c.start_master()
        self._register("master")
        c.start_nginx()
        self._register("nginx")
        nginx_pid = c.procs["nginx"].pid
        for i, pid in enumerate(sorted(children_of(nginx_pid))):
            p = Proc(f"{self.tag}kv-nginx-worker{i + 1}", "kv", pid)
            self.procs.append(p)
            self.monitor.add(p)
        if preload == "http":
            self.preload_http(keys, value_bytes, clients)
        load_s = time.monotonic() - t0
        self.verify(keys)
        return load_s

    def preload_wire(self, keys, value_bytes):
        """Writes key0..key<keys-1> straight into every replica over the wire protocol (prepare + commit,
        pipelined), before the master starts; the same seqs everywhere, so the replicas end up identical
        (as bench/durability.py's load_replica_directly, with batches bounded in bytes)."""
        value = b"v" * value_bytes
        per_batch = max(1, min(2000, (4 << 20) // (value_bytes + 32)))

        def load(rid):
            r = self.cluster.replica(rid)
            client = kvcluster.WireClient(r["host"], int(r["port"]), timeout_s=120, key=self.cluster.wire_key(),
                                          client_id="bench", tls=self.cluster.link_tls_context())
            try:
                join_fresh_replica(client, rid)
                seq = 1
                for start in range(0, keys, per_batch):
                    if STOP.is_set():
                        raise KeyboardInterrupt("stopped")
                    lines = []
                    for i in range(start, min(keys, start + per_batch)):
                        lines.append(b"%d;put;key%d;%s\n%d;com;;\n" % (seq, i, value, seq))
                        seq += 1
                    client.sock.sendall(b"".join(lines))
                    for _ in range(2 * len(lines)):  # one reply line per request, in order; no JSON parse needed
                        reply = client.file.readline()
                        if not reply:
                            raise RuntimeError(f"wire preload: {rid} closed the connection")
                        if b'"status":true' not in reply:
                            raise RuntimeError(f"wire preload of {rid} failed: {reply[:300]!r}")
            finally:
                client.close()

        with concurrent.futures.ThreadPoolExecutor(len(self.cluster.replica_ids)) as pool:
            for fut in [pool.submit(load, rid) for rid in self.cluster.replica_ids]:
                fut.result()

    def preload_http(self, keys, value_bytes, clients):
        """PUTs through nginx. A 503 or 409 (the README: nothing written, retry is safe) is retried up to 8 times
        with backoff; the retries are counted and reported (self.preload_retries, self.preload_first_failure)."""
        value = b"v" * value_bytes
        port = self.cluster.http_port
        lock = threading.Lock()

        def put(conn, i):
            for attempt in range(9):
                conn.request("PUT", f"/kv/key{i}", body=value)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    return
                if resp.status not in (409, 503) or attempt == 8:
                    raise RuntimeError(f"kv preload PUT key{i}: {resp.status} {body[:600]!r}")
                with lock:
                    self.preload_retries += 1
                    if not self.preload_first_failure:
                        self.preload_first_failure = f"{resp.status} {body[:600].decode(errors='replace')}"
                time.sleep(0.05 * 2 ** attempt)

        run_batches(keys, 64, clients, lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=30),
                    lambda conn, lo, hi: [put(conn, i) for i in range(lo, hi)])

    def verify(self, keys):
        status, body = self.cluster.http("GET", "/status")
        if status != 200:
            raise RuntimeError(f"kv /status answered {status}: {body}")
        replicas = body.get("replicas", [])
        counts = {r.get("id"): r.get("keys") for r in replicas}
        digests = {r.get("digest") for r in replicas}
        if any(v != keys for v in counts.values()) or len(digests) != 1:
            raise RuntimeError(f"kv preload: replicas disagree or miss keys (want {keys}): "
                               f"{[(r.get('id'), r.get('keys'), r.get('digest')) for r in replicas]}")

    def wrk_url(self):
        return self.url

    def stop(self):
        try:
            self.cluster.stop()  # nginx SIGQUIT, master and replicas SIGTERM; SIGKILL after 10 s each
        except Exception as e:  # noqa: BLE001 - fall through to the hard stop
            log(f"kv: graceful stop failed ({e}); killing")
        self.cluster.kill_all()
        for p in self.procs:  # nginx workers outlive a killed nginx master
            p.kill()


# ----- etcd -------------------------------------------------------------------------------------------------------

def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def post_json(url, path, payload, timeout_s=10):
    host, port = url.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, {"raw": data.decode(errors="replace")}
    finally:
        conn.close()


class EtcdSystem:
    """A 3-node etcd cluster from Debian's etcd-server, all on 127.0.0.1, default settings (fsync on)."""

    name = "etcd"

    def __init__(self, root, monitor, nodes=3, tag=""):
        self.root = root
        self.monitor = monitor
        self.tag = tag
        self.names = [f"e{i + 1}" for i in range(nodes)]
        self.client_urls = {n: f"http://127.0.0.1:{kvcluster.free_port()}" for n in self.names}
        self.peer_urls = {n: f"http://127.0.0.1:{kvcluster.free_port()}" for n in self.names}
        self.popen = {}
        self.procs = []
        self.leader = None
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)

    def start(self, keys, value_bytes, clients):
        initial = ",".join(f"{n}={self.peer_urls[n]}" for n in self.names)
        token = f"kv-bench-{os.getpid()}-{int(time.time())}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for n in self.names:
            argv = ["etcd", "--name", n, "--data-dir", os.path.join(self.root, n),
                    "--listen-client-urls", self.client_urls[n], "--advertise-client-urls", self.client_urls[n],
                    "--listen-peer-urls", self.peer_urls[n], "--initial-advertise-peer-urls", self.peer_urls[n],
                    "--initial-cluster", initial, "--initial-cluster-token", token,
                    "--initial-cluster-state", "new"]
            with open(os.path.join(self.root, "logs", f"{n}.log"), "ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            self.popen[n] = proc
            p = Proc(f"{self.tag}etcd-{n}", "etcd", proc.pid)
            self.procs.append(p)
            self.monitor.add(p)
        kvcluster.wait_until(self._ready, 60, "etcd: 3 healthy members agreeing on a leader")
        self.etcdctl_check()
        t0 = time.monotonic()
        self.preload(keys, value_bytes, clients)
        load_s = time.monotonic() - t0
        self.verify(keys)
        return load_s

    def status(self, n):
        status, body = post_json(self.client_urls[n], "/v3/maintenance/status", {}, timeout_s=5)
        if status != 200:
            raise RuntimeError(f"etcd {n} status: {status} {body}")
        return body

    def etcdctl_check(self):
        """Cross-checks the leader with `etcdctl endpoint status` (Debian's etcd-client), when it is installed."""
        if shutil.which("etcdctl") is None:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        env["ETCDCTL_API"] = "3"
        out = subprocess.run(["etcdctl", "--endpoints", ",".join(self.client_urls.values()), "endpoint", "status",
                              "-w", "json"], capture_output=True, text=True, env=env, timeout=30)
        try:
            leaders = [e["Endpoint"] for e in json.loads(out.stdout)
                       if e["Status"]["header"]["member_id"] == e["Status"]["leader"]]
        except (ValueError, KeyError, TypeError):
            log(f"etcdctl endpoint status: unexpected output {out.stdout[:300]!r} {out.stderr[:300]!r}")
            return
        if leaders != [self.wrk_url()]:
            log(f"etcdctl names leader(s) {leaders}, the status API {self.wrk_url()}; re-checking")
            kvcluster.wait_until(self.find_leader, 30, "etcd to agree on a leader")

    def _ready(self):
        for n, proc in self.popen.items():
            if proc.poll() is not None:
                with open(os.path.join(self.root, "logs", f"{n}.log"), errors="replace") as f:
                    raise RuntimeError(f"etcd {n} exited with {proc.returncode}; log:\n{f.read()[-3000:]}")
        try:
            return self.find_leader()
        except (OSError, RuntimeError, ValueError):
            return None

    def find_leader(self):
        """The member every node names as leader (from the JSON /v3/maintenance/status); None if they differ."""
        ids, leaders = {}, set()
        for n in self.names:
            s = self.status(n)
            ids[str(s["header"]["member_id"])] = n
            leaders.add(str(s.get("leader", "0")))
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader not in ids:
            return None
        self.leader = ids[leader]
        return self.leader

    def wrk_url(self):
        return self.client_urls[self.leader]

    def preload(self, keys, value_bytes, clients):
        """key0..key<keys-1> through the leader's gateway: txns of up to 128 puts (etcd's --max-txn-ops) and
        at most ~1 MiB each (under its 1.5 MiB request limit), `clients` connections at once."""
        value64 = b64(b"v" * value_bytes)
        per_txn = max(1, min(128, (1 << 20) // (len(value64) + 64)))
        host, port = self.wrk_url().rsplit("/", 1)[-1].split(":")

        def txn(conn, lo, hi):
            ops = [{"requestPut": {"key": b64(f"key{i}"), "value": value64}} for i in range(lo, hi)]
            conn.request("POST", "/v3/kv/txn", body=json.dumps({"success": ops}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or b'"succeeded":true' not in body:
                raise RuntimeError(f"etcd preload txn key{lo}..key{hi - 1}: {resp.status} {body[:300]!r}")

        run_batches(keys, per_txn, clients, lambda: http.client.HTTPConnection(host, int(port), timeout=60), txn)

    def count(self, prefix="key"):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        status, body = post_json(self.wrk_url(), "/v3/kv/range",
                                 {"key": b64(prefix), "range_end": b64(end), "count_only": True}, timeout_s=60)
        if status != 200:
            raise RuntimeError(f"etcd count: {status} {body}")
        return int(body.get("count", 0))

    def verify(self, keys):
        got = self.count()
        if got != keys:
            raise RuntimeError(f"etcd preload: {got} keys under 'key', want {keys}")

    def figures(self):
        """db size and raft index per member, for the results."""
        out = {}
        for n in self.names:
            try:
                s = self.status(n)
                out[n] = {"db_size": int(s.get("dbSize", 0)), "raft_index": int(s.get("raftIndex", 0)),
                          "version": s.get("version")}
            except (OSError, RuntimeError, ValueError) as e:
                out[n] = {"error": str(e)}
        return out

    def stop(self):
        for proc in self.popen.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.popen.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Ceiling:
    """GET /ping of kv-master through kv's nginx: what nginx + FastCGI carry without the replicas."""

    name = "ceiling"

    def __init__(self, kv):
        self.kv = kv

    def wrk_url(self):
        return self.kv.url


def run_batches(total, per_batch, clients, connect, do_batch, deadline_s=1800):
    """Runs do_batch(conn, lo, hi) over [0, total) in batches of per_batch on `clients` threads, each with its own
    connection; bounded by deadline_s and stopped by STOP."""
    lock = threading.Lock()
    state = {"next": 0}
    deadline = time.monotonic() + deadline_s

    def worker():
        conn = connect()
        try:
            while not STOP.is_set():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"preload not done after {deadline_s} s")
                with lock:
                    lo = state["next"]
                    if lo >= total:
                        return
                    hi = min(total, lo + per_batch)
                    state["next"] = hi
                do_batch(conn, lo, hi)
        finally:
            conn.close()

    pool = concurrent.futures.ThreadPoolExecutor(max(1, clients))
    futures = [pool.submit(worker) for _ in range(max(1, clients))]
    try:
        for fut in futures:
            fut.result()
    except BaseException:
        STOP.set()  # the other workers stop after their current batch
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if STOP.is_set():
        raise KeyboardInterrupt("stopped")


# ----- wrk --------------------------------------------------------------------------------------------------------

SCRIPTS = {("kv", "put"): "kv_put.lua", ("kv", "get"): "kv_get.lua", ("etcd", "put"): "etcd_put.lua",
           ("etcd", "get"): "etcd_get.lua", ("ceiling", "get"): "ping.lua"}


class Runner:
    def __init__(self, args, monitor):
        self.args = args
        self.monitor = monitor
        self.runs = []

    def wrk(self, system, op, connections, seconds, keys, value_bytes, max_requests=0):
        threads = max(1, min(self.args.wrk_threads, connections))
        env = dict(os.environ, BENCH_LUA_DIR=LUA_DIR, BENCH_KEYS=str(keys), BENCH_VALUE_BYTES=str(value_bytes),
                   BENCH_THREADS=str(threads), BENCH_MAX_REQUESTS=str(max_requests))
        argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{self.args.wrk_timeout}s",
                "-s", os.path.join(LUA_DIR, SCRIPTS[(system.name, op)]), system.wrk_url()]
        ticks0, m0, t0 = self.monitor.group_ticks(), machine_ticks(), time.monotonic()
        wrk_ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120)
        wall = time.monotonic() - t0
        wrk_ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ticks1, m1 = self.monitor.group_ticks(), machine_ticks()
        line = next((l for l in out.stdout.splitlines() if l.startswith("KV_WRK_SUMMARY ")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"wrk {' '.join(argv)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n"
                               f"{out.stderr[-2000:]}")
        summary = json.loads(line.split(" ", 1)[1])
        cores = {g: (ticks1.get(g, 0) - ticks0.get(g, 0)) / CLK_TCK / wall for g in set(ticks0) | set(ticks1)}
        cores["wrk"] = ((wrk_ru1.ru_utime + wrk_ru1.ru_stime) - (wrk_ru0.ru_utime + wrk_ru0.ru_stime)) / wall
        own = sum(cores.values())
        for key in ("busy", "irq", "steal"):
            cores[f"machine_{key}"] = (m1[key] - m0[key]) / CLK_TCK / wall
        cores["other"] = max(0.0, cores["machine_busy"] - own - cores["machine_irq"] - cores["machine_steal"])
        summary["cores"] = {k: round(v, 3) for k, v in cores.items()}
        summary["errors"] = summary["non2xx"] + summary["bad_body"] + summary["socket_errors"]
        return summary

    def measure(self, system, op, connections, keys, value_bytes, round_no, max_requests=0, extra=None):
        if STOP.is_set():
            raise KeyboardInterrupt("stopped")
        leader_before = None
        if system.name == "etcd":
            leader_before = system.find_leader()
            if leader_before is None:
                kvcluster.wait_until(system.find_leader, 30, "etcd to agree on a leader")
                leader_before = system.leader
        warm = None
        if self.args.warmup > 0:
            warm = self.wrk(system, op, connections, self.args.warmup, keys, value_bytes,
                            max_requests=max_requests // 4 if max_requests else 0)
        s = self.wrk(system, op, connections, self.args.duration, keys, value_bytes, max_requests)
        record = {"system": system.name, "op": op, "connections": connections, "round": round_no, "keys": keys,
                  "value_bytes": value_bytes, "max_requests": max_requests, **(extra or {}), **s,
                  "warmup": {k: warm[k] for k in ("requests", "rps", "p99_us", "errors")} if warm else None}
        if system.name == "etcd":
            leader_after = system.find_leader()
            record["etcd_leader"] = leader_before
            record["etcd_leader_changed"] = leader_after != leader_before
        self.runs.append(record)
        flag = "" if s["errors"] == 0 else (f"  ERRORS non2xx={s['non2xx']} bad_body={s['bad_body']} "
                                            f"socket={s['socket_errors']} first={s['first_non2xx'] or s['first_bad_body']}")
        log(f"  {system.name:7} {op} c={connections:<3} {s['rps']:9.0f} req/s  p50 {s['p50_us'] / 1000:7.2f} ms  "
            f"p99 {s['p99_us'] / 1000:7.2f} ms  max {s['max_us'] / 1000:7.1f} ms  "
            f"cpu {system.name if system.name != 'ceiling' else 'kv'}="
            f"{s['cores'].get('kv' if system.name == 'ceiling' else system.name, 0):.2f} "
            f"wrk={s['cores']['wrk']:.2f} irq={s['cores']['machine_irq']:.2f} other={s['cores']['other']:.2f}{flag}")
        return record


# ----- reporting --------------------------------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell(v, fmt="{:.0f}"):
    return "–" if v is None else fmt.format(v)


def ms(us):
    return None if us is None else us / 1000


def aggregate(runs, system, op, connections, **match):
    rs = [r for r in runs if r["system"] == system and r["op"] == op and r["connections"] == connections
          and all(r.get(k) == v for k, v in match.items())]
    if not rs:
        return None
    return {"rounds": len(rs), "rps": med([r["rps"] for r in rs]), "rps_each": [round(r["rps"], 1) for r in rs],
            "p50_ms": ms(med([r["p50_us"] for r in rs])), "p99_ms": ms(med([r["p99_us"] for r in rs])),
            "max_ms": ms(max(r["max_us"] for r in rs)), "requests": sum(r["requests"] for r in rs),
            "non2xx": sum(r["non2xx"] for r in rs), "bad_body": sum(r["bad_body"] for r in rs),
            "socket_errors": sum(r["socket_errors"] for r in rs), "errors": sum(r["errors"] for r in rs),
            "server_cores": med([r["cores"].get("kv" if system == "ceiling" else system, 0) for r in rs]),
            "wrk_cores": med([r["cores"]["wrk"] for r in rs]), "other_cores": med([r["cores"]["other"] for r in rs]),
            "irq_cores": med([r["cores"]["machine_irq"] for r in rs]),
            "steal_cores": med([r["cores"]["machine_steal"] for r in rs])}


def ratio(a, b):
    return None if a is None or b is None or not b else a / b


def peak_table(peaks):
    lines = ["| process | peak RSS (MiB) |", "|---|---|"]
    for name in sorted(peaks):
        lines.append(f"| {name} | {peaks[name] / 1024:.1f} |")
    return lines


def compare_report(meta, result, peaks, args):
    runs = result["runs"]
    rows, summary = [], {}
    for op in ("put", "get"):
        for c in args.connections:
            kv = aggregate(runs, "kv", op, c)
            et = aggregate(runs, "etcd", op, c)
            ce = aggregate(runs, "ceiling", "get", c) if op == "get" else None
            entry = {"kv": kv, "etcd": et, "kv_over_etcd": ratio(kv and kv["rps"], et and et["rps"])}
            if op == "get":
                entry["ceiling"] = ce
                entry["kv_over_ceiling"] = ratio(kv and kv["rps"], ce and ce["rps"])
            summary[f"{op}/c{c}"] = entry
            rows.append((op, c, kv, et, ce, entry))
    errors = sum(r["errors"] for r in runs)
    leader_changes = sum(1 for r in runs if r.get("etcd_leader_changed"))
    valid = errors == 0
    md = [f"# kv vs etcd — {meta['date']}", "",
          f"- command: `{meta['command']}`",
          f"- commit: {meta['commit']}{' (uncommitted changes)' if meta['dirty'] else ''}; binaries {meta['bin_dir']}",
          f"- machine: {meta['cpus']} CPUs, {meta['kernel']}; load average at start {meta['loadavg_start']}, "
          f"at end {meta['loadavg_end']}",
          f"- versions: {meta['etcd_version']}, {meta['wrk_version']}, {meta['nginx_version']}",
          f"- {args.keys} keys, {args.value_bytes}-byte values, {args.duration} s per run after a {args.warmup} s "
          f"warm-up, {args.rounds} round(s), systems alternating; wrk -t{args.wrk_threads} (fewer for 1 "
          f"connection); figures are medians over rounds (max ms: the slowest request of all rounds)",
          f"- data dir filesystem: {meta['fs_type']}",
          f"- **{'valid' if valid else 'INVALID'}**: {errors} non-2xx / bad bodies / socket errors in measured runs; "
          f"etcd leader changes during runs: {leader_changes}", ""]
    md += ["| op | conns | kv req/s | kv p50 ms | kv p99 ms | kv max ms | etcd req/s | etcd p50 ms | etcd p99 ms "
           "| kv/etcd | ceiling req/s | kv/ceiling | errors kv/etcd/ceiling |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for op, c, kv, et, ce, entry in rows:
        md.append("| " + " | ".join([
            op, str(c), cell(kv and kv["rps"]), cell(kv and kv["p50_ms"], "{:.2f}"), cell(kv and kv["p99_ms"], "{:.2f}"),
            cell(kv and kv["max_ms"], "{:.1f}"), cell(et and et["rps"]), cell(et and et["p50_ms"], "{:.2f}"),
            cell(et and et["p99_ms"], "{:.2f}"), cell(entry["kv_over_etcd"], "{:.2f}×"), cell(ce and ce["rps"]),
            cell(entry.get("kv_over_ceiling"), "{:.0%}"),
            "/".join(str(x["errors"]) if x else "–" for x in (kv, et, ce) if x is not None or op == "get")]) + " |")
    if result.get("kv_preload_retries"):
        md += ["", f"The kv preload retried {result['kv_preload_retries']} PUT(s) answered 409/503 (retry is safe); "
                   f"first: `{result['kv_preload_first_failure'][:300]}`"]
    md += ["", "CPU busy during the measured runs, in cores of the 2 (median over rounds): the measured system's "
               "processes / wrk / irq+softirq (loopback networking) / everything else (other tenants, the idle "
               "system); steal, if any, is in the JSON:", "",
           "| op | conns | kv | etcd | ceiling |",
           "|---|---|---|---|---|"]
    for op, c, kv, et, ce, _ in rows:
        def cpu(x):
            return "–" if not x else (f"{x['server_cores']:.2f} / {x['wrk_cores']:.2f} / {x['irq_cores']:.2f} / "
                                      f"{x['other_cores']:.2f}")
        md.append(f"| {op} | {c} | {cpu(kv)} | {cpu(et)} | {cpu(ce) if op == 'get' else '–'} |")
    md += ["", "Peak RSS (VmHWM) of the processes started, over the whole run (preload included):", ""]
    md += peak_table(peaks)
    return "\n".join(md) + "\n", summary, valid


def growth_report(meta, points, args):
    md = [f"# kv vs etcd: cost growth — {meta['date']}", "",
          f"- command: `{meta['command']}`",
          f"- commit: {meta['commit']}{' (uncommitted changes)' if meta['dirty'] else ''}",
          f"- machine: {meta['cpus']} CPUs; load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}",
          f"- {args.duration} s per run after a {args.warmup} s warm-up, {args.rounds} round(s), systems alternating; "
          f"a fresh kv and etcd cluster per point; keyspace per point capped at "
          f"{args.growth_preload_bytes >> 20} MiB of values, writes per put run capped at "
          f"{args.growth_put_bytes >> 20} MiB (a capped run ends early; req/s is over the time it ran)", ""]
    md += ["| keys | value | op | conns | kv req/s | kv p99 ms | etcd req/s | etcd p99 ms | kv/etcd | errors kv/etcd "
           "| kv preload s | etcd preload s | peak RSS MiB kv master / max replica / max etcd |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    all_valid = True
    notes = []
    for pt in points:
        if pt.get("kv_preload_retries"):
            notes.append(f"- {pt['keys']:,} keys × {human_bytes(pt['value_bytes'])}: the kv preload retried "
                         f"{pt['kv_preload_retries']} PUT(s) answered 409/503; first: "
                         f"`{pt['kv_preload_first_failure'][:300]}`")
        if pt.get("error"):
            all_valid = False
            notes.append(f"- {pt['keys']:,} keys × {human_bytes(pt['value_bytes'])}: **point failed**: "
                         f"`{pt['error'][:500]}`")
        for op in ("put", "get"):
            for c in args.growth_connections:
                kv = aggregate(pt["runs"], "kv", op, c)
                et = aggregate(pt["runs"], "etcd", op, c)
                pt.setdefault("summary", {})[f"{op}/c{c}"] = {"kv": kv, "etcd": et,
                                                               "kv_over_etcd": ratio(kv and kv["rps"], et and et["rps"])}
                errs = [x["errors"] for x in (kv, et) if x]
                all_valid &= not any(errs)
                peaks = pt["peaks_kb"]
                kv_master = max((v for k, v in peaks.items() if k.endswith("kv-master")), default=0)
                kv_rep = max((v for k, v in peaks.items() if "kv-r" in k), default=0)
                etcd = max((v for k, v in peaks.items() if "etcd-" in k), default=0)
                md.append("| " + " | ".join([
                    f"{pt['keys']:,}", human_bytes(pt["value_bytes"]), op, str(c), cell(kv and kv["rps"]),
                    cell(kv and kv["p99_ms"], "{:.2f}"), cell(et and et["rps"]), cell(et and et["p99_ms"], "{:.2f}"),
                    cell(ratio(kv and kv["rps"], et and et["rps"]), "{:.2f}×"), "/".join(str(e) for e in errs),
                    f"{cell(pt['kv_preload_s'], '{:.1f}')} ({pt['kv_preload']})", cell(pt['etcd_preload_s'], '{:.1f}'),
                    f"{kv_master / 1024:.0f} / {kv_rep / 1024:.0f} / {etcd / 1024:.0f}"]) + " |")
    if notes:
        md += [""] + notes
    md.insert(6, f"- **{'valid' if all_valid else 'INVALID'}**: non-2xx / bad bodies / socket errors in measured runs "
                 f"{'all 0' if all_valid else 'present (see errors column)'}")
    return "\n".join(md) + "\n", all_valid


def human_bytes(n):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def growth_plot(points, args, path_base):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    small_keys = args.growth_keys[0]
    for c in args.growth_connections:
        fig, axes = plt.subplots(2, 2, figsize=(12, 8))
        series = [p for p in points if p["requested_keys"] == small_keys]
        keyser = [p for p in points if p["value_bytes"] == args.growth_values[0]]
        for system, colour in (("kv", "tab:blue"), ("etcd", "tab:orange")):
            for op, style in (("put", "-o"), ("get", "--s")):
                # Row 0: against value size; row 1: against the number of keys.
                for row, points_of_row, x_field in ((0, series, "value_bytes"), (1, keyser, "keys")):
                    xs, rps, p99 = [], [], []
                    for p in points_of_row:
                        a = aggregate(p["runs"], system, op, c)
                        if a:
                            xs.append(p[x_field])
                            rps.append(a["rps"])
                            p99.append(a["p99_ms"])
                    axes[row][0].plot(xs, rps, style, color=colour, label=f"{system} {op}")
                    axes[row][1].plot(xs, p99, style, color=colour, label=f"{system} {op}")
        for ax in axes[0]:
            ax.set_xscale("log", base=2)
            ax.set_xticks([p["value_bytes"] for p in series], [human_bytes(p["value_bytes"]) for p in series])
            ax.set_xlabel(f"value size ({small_keys:,} keys, fewer where the keyspace cap applies: see table)")
        for ax in axes[1]:
            ax.set_xscale("log")
            ax.set_xticks([p["keys"] for p in keyser], [f"{p['keys']:,}" for p in keyser])
            ax.set_xlabel(f"keys ({human_bytes(args.growth_values[0])} values)")
        for ax in (axes[0][0], axes[1][0]):
            ax.set_ylabel("req/s")
            ax.set_yscale("log")
        for ax in (axes[0][1], axes[1][1]):
            ax.set_ylabel("p99 latency (ms)")
            ax.set_yscale("log")
        for row in axes:
            for ax in row:
                ax.grid(True, which="both", alpha=0.3)
                ax.legend(fontsize=8)
        fig.suptitle(f"kv vs etcd cost growth, {c} connections")
        fig.tight_layout()
        path = f"{path_base}-c{c}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# ----- metadata ---------------------------------------------------------------------------------------------------

def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def metadata(args, workdir):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True)
    fs = subprocess.run(["stat", "-f", "-c", "%T", workdir], capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": os.environ.get("KV_BENCH_COMMAND") or " ".join(["bench/compare.py"] + sys.argv[1:]),
        "commit": commit.stdout.strip() or "?", "dirty": bool(dirty.stdout.strip()),
        "bin_dir": os.environ.get("KV_BIN_DIR") or kvcluster.default_bin_dir(),
        "cpus": os.cpu_count(), "kernel": platform.release(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "etcd_version": first_line(["etcd", "--version"]), "wrk_version": first_line(["wrk", "-v"]).split(" [")[0],
        "nginx_version": first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "fs_type": fs.stdout.strip() or "?", "workdir": workdir,
    }


# ----- modes ------------------------------------------------------------------------------------------------------

def kv_preload_mode(args, keys):
    if args.kv_preload != "auto":
        return args.kv_preload
    return "http" if keys <= args.http_preload_max else "wire"


def run_compare(args, workdir, monitor, cleanups):
    runner = Runner(args, monitor)
    kv = KvSystem(os.path.join(workdir, "kv"), monitor, link_tls=args.link_tls)
    cleanups.append(kv.stop)
    etcd = EtcdSystem(os.path.join(workdir, "etcd"), monitor)
    cleanups.append(etcd.stop)
    ceiling = Ceiling(kv)
    mode = kv_preload_mode(args, args.keys)
    log(f"starting kv (nginx {kv.url}) and preloading {args.keys} keys of {args.value_bytes} B ({mode})")
    kv_load = kv.start(args.keys, args.value_bytes, mode, args.preload_clients)
    log(f"starting etcd ({', '.join(etcd.client_urls.values())}) and preloading {args.keys} keys")
    etcd_load = etcd.start(args.keys, args.value_bytes, args.preload_clients)
    log(f"etcd leader {etcd.leader} ({etcd.wrk_url()}); preload kv {kv_load:.1f} s, etcd {etcd_load:.1f} s")
    for rnd in range(1, args.rounds + 1):
        order = [kv, etcd] if rnd % 2 == 1 else [etcd, kv]
        log(f"round {rnd}/{args.rounds}: {' then '.join(s.name for s in order)}")
        for op in ("put", "get"):
            for c in args.connections:
                for system in order:
                    runner.measure(system, op, c, args.keys, args.value_bytes, rnd)
                    if op == "get" and system is kv:
                        runner.measure(ceiling, "get", c, args.keys, args.value_bytes, rnd)
    monitor.sample()
    return {"runs": runner.runs, "preload_s": {"kv": kv_load, "etcd": etcd_load}, "kv_preload": mode,
            "kv_preload_retries": kv.preload_retries, "kv_preload_first_failure": kv.preload_first_failure,
            "pids": {p.name: p.pid for p in monitor.procs},
            "etcd_leader": etcd.leader, "etcd_figures": etcd.figures(), "kv_urls": kv.url,
            "etcd_urls": etcd.client_urls}


def run_growth(args, workdir, monitor_factory, cleanups):
    plan = [(args.growth_keys[0], v) for v in args.growth_values] + [(k, args.growth_values[0])
                                                                    for k in args.growth_keys[1:]]
    points = []
    for idx, (want_keys, value_bytes) in enumerate(plan):
        keys = max(1, min(want_keys, args.growth_preload_bytes // value_bytes))
        cap = max(1, args.growth_put_bytes // value_bytes)
        monitor = monitor_factory()
        runner = Runner(args, monitor)
        root = os.path.join(workdir, f"growth-{idx + 1}")
        kv = KvSystem(os.path.join(root, "kv"), monitor, link_tls=args.link_tls)
        etcd = EtcdSystem(os.path.join(root, "etcd"), monitor)
        cleanups.append(kv.stop)
        cleanups.append(etcd.stop)
        mode = kv_preload_mode(args, keys)
        log(f"growth point {idx + 1}/{len(plan)}: {keys:,} keys (asked {want_keys:,}), {human_bytes(value_bytes)} "
            f"values, put runs capped at {cap} requests; kv preload {mode}")
        kv_load = etcd_load = None
        figures, error = {}, None
        try:
            kv_load = kv.start(keys, value_bytes, mode, args.preload_clients)
            log(f"  kv preloaded in {kv_load:.1f} s")
            etcd_load = etcd.start(keys, value_bytes, args.preload_clients)
            log(f"  etcd preloaded in {etcd_load:.1f} s (leader {etcd.leader})")
            for rnd in range(1, args.rounds + 1):
                order = [kv, etcd] if rnd % 2 == 1 else [etcd, kv]
                for op in ("put", "get"):
                    for c in args.growth_connections:
                        for system in order:
                            runner.measure(system, op, c, keys, value_bytes, rnd,
                                           max_requests=cap if op == "put" else 0)
            monitor.sample()
            figures = etcd.figures()
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired) as e:
            error = str(e)
            log(f"  growth point {idx + 1} FAILED: {error[:1500]}")
            if args.keep:
                log(f"  logs kept in {root}")
        finally:
            kv.stop()
            etcd.stop()
            monitor.done.set()
        points.append({"requested_keys": want_keys, "keys": keys, "value_bytes": value_bytes, "put_cap": cap,
                       "error": error, "kv_preload_retries": kv.preload_retries,
                       "kv_preload_first_failure": kv.preload_first_failure,
                       "kv_preload": mode, "kv_preload_s": kv_load, "etcd_preload_s": etcd_load,
                       "etcd_figures": figures, "peaks_kb": dict(monitor.peak_kb), "runs": runner.runs})
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)  # data of one point can be GBs; the next point starts clean
    return points


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["compare", "growth", "all"], default="compare")
    p.add_argument("--link-tls", action="store_true",
                   help="kv with mutual TLS on its cluster links (security.tls; etcd's peers stay plain, as kv's "
                        "HTTP side does)")
    p.add_argument("--smoke", action="store_true",
                   help="quick end-to-end check: 2 s runs, 1 s warm-up, 1 round (explicit flags still win)")
    p.add_argument("--duration", type=int, help="seconds per measured run (default 10; smoke 2)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up before each measured run (default 3; smoke 1)")
    p.add_argument("--rounds", type=int, help="rounds of alternating runs (default 2; smoke 1)")
    p.add_argument("--connections", type=int_list, default=[1, 16, 64], help="compare mode (default 1,16,64)")
    p.add_argument("--keys", type=int, default=10000, help="compare mode keyspace (default 10000)")
    p.add_argument("--value-bytes", type=int, default=64, help="compare mode value size (default 64)")
    p.add_argument("--growth-values", type=int_list, default=[64, 4096, 262144],
                   help="growth mode value sizes at the first --growth-keys (default 64,4096,262144)")
    p.add_argument("--growth-keys", type=int_list, default=[10000, 1000000],
                   help="growth mode key counts at the first --growth-values (default 10000,1000000)")
    p.add_argument("--growth-connections", type=int_list, default=[16], help="growth mode (default 16)")
    p.add_argument("--growth-preload-bytes", type=int, default=256 << 20,
                   help="cap on keys x value size per growth point (default 256 MiB: 1024 keys at 256 KiB)")
    p.add_argument("--growth-put-bytes", type=int, default=256 << 20,
                   help="cap on bytes written by one measured put run in growth mode (default 256 MiB)")
    p.add_argument("--kv-preload", choices=["auto", "http", "wire"], default="auto",
                   help="kv preload through nginx (http) or straight into the replicas (wire); auto: http up to "
                        "--http-preload-max keys")
    p.add_argument("--http-preload-max", type=int, default=100000)
    p.add_argument("--preload-clients", type=int, default=16)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--wrk-timeout", type=int, default=10, help="wrk --timeout seconds (a timeout is an error)")
    p.add_argument("--workdir", help="where the temporary data dirs go (default: $TMPDIR or /tmp; must not be "
                                     "tmpfs, or fsync is free)")
    p.add_argument("--results-dir", default=os.path.join(BENCH, "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.duration = args.duration or (2 if smoke else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    args.rounds = args.rounds or (1 if smoke else 2)
    return args


def main():
    args = parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    for tool in ("wrk", "etcd", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found; run bench/run.sh, which installs it")
    workdir = tempfile.mkdtemp(prefix="kv-bench-", dir=args.workdir)
    os.chmod(workdir, 0o755)  # nginx workers may run as another user
    meta = metadata(args, workdir)
    if meta["fs_type"] in ("tmpfs", "ramfs"):
        log(f"WARNING: {workdir} is on {meta['fs_type']}: fsync costs nothing there; use --workdir on a disk")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.results_dir, exist_ok=True)
    cleanups = []
    monitors = []

    def new_monitor():
        m = Monitor()
        m.start()
        monitors.append(m)
        return m

    written = []
    ok = True
    try:
        log(f"work dir {workdir} ({meta['fs_type']}); binaries {meta['bin_dir']}; load average "
            f"{meta['loadavg_start']}")
        if args.mode in ("compare", "all"):
            monitor = new_monitor()
            result = run_compare(args, workdir, monitor, cleanups)
            for fn in reversed(cleanups):
                fn()
            cleanups.clear()
            monitor.sample()
            meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            peaks = dict(monitor.peak_kb)
            md, summary, valid = compare_report(meta, result, peaks, args)
            ok &= valid
            base = os.path.join(args.results_dir, f"compare-{stamp}")
            with open(base + ".json", "w") as f:
                json.dump({"meta": meta, "params": vars(args), "valid": valid, "summary": summary,
                           "peak_rss_kb": peaks, **result}, f, indent=1)
            with open(base + ".md", "w") as f:
                f.write(md)
            written += [base + ".md", base + ".json"]
            print("\n" + md)
        if args.mode in ("growth", "all"):
            points = run_growth(args, workdir, new_monitor, cleanups)
            cleanups.clear()
            meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            base = os.path.join(args.results_dir, f"growth-{stamp}")
            md, valid = growth_report(meta, points, args)
            ok &= valid
            pngs = growth_plot(points, args, base)
            if pngs:
                md += "\n" + "\n".join(f"![growth]({os.path.basename(p)})" for p in pngs) + "\n"
            with open(base + ".json", "w") as f:
                json.dump({"meta": meta, "params": vars(args), "valid": valid, "points": points}, f, indent=1)
            with open(base + ".md", "w") as f:
                f.write(md)
            written += [base + ".md", base + ".json"] + pngs
            print("\n" + md)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping everything started")
        ok = None
    except Exception as e:  # noqa: BLE001 - report, stop everything, exit non-zero
        log(f"FAILED: {type(e).__name__}: {e}")
        ok = False
    finally:
        STOP.set()
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                log(f"cleanup: {e}")
        for m in monitors:
            m.done.set()
            for proc in m.procs:  # every process started, by PID + start time: nothing may outlive the run
                if proc.alive():
                    log(f"cleanup: {proc.name} (pid {proc.pid}) still running; SIGKILL")
                    proc.kill()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for path in written:
        log(f"wrote {os.path.relpath(path, REPO)}")
    if ok is None:
        sys.exit(130)
    if not ok:
        log("INVALID run: some measured requests failed (see the errors columns)")
        sys.exit(1)


if __name__ == "__main__":
    main()
