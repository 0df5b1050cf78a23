#!/usr/bin/env python3
"""Start, stop and talk to a kv cluster (nginx + kv-master + replicas) on loopback.

Used two ways:
  * as a library by the integration tests (Tests/integration), with a generated cluster.yaml on free ports
    in a temporary directory, every process a child of the test and stopped by PID at the end;
  * as the dev cluster CLI behind scripts/cluster.sh: `kvcluster.py start|stop|status --config cluster.yaml`,
    processes detached, their PIDs kept in run/pids/ so `stop` signals exactly those.

Readiness is checked, never slept for: a replica is up when it answers `;stat;;`, the master when nginx
answers GET /ping with 200.
"""
import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvwire import WireClient, client_tls_context, read_key, role_key  # noqa: E402,F401  (re-exported for the tests)
import linkpki  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE_FILE = os.path.join(REPO, "nginx", "kv-site.conf")
LOCATIONS_FILE = os.path.join(REPO, "nginx", "kv-locations.conf")
# seq = seq epoch × this + a counter (TransactionManager.seqsPerEpoch).
SEQS_PER_EPOCH = 1_000_000_000


_ports_handed_out = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A loopback TCP port that is free now, taken below the kernel's ephemeral range: ports in that range are
    handed to outgoing connections (wrk, nginx, the master's links) and one could take it before our server
    binds it. Never the same port twice in one process."""
    low = _ephemeral_range()[0]
    if low > 21000:
        for _ in range(500):
            port = random.randrange(20000, low)
            if port in _ports_handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _ports_handed_out.add(port)
    return port


def default_bin_dir():
    env = os.environ.get("KV_BIN_DIR")
    if env:
        return env
    out = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def wait_until(predicate, timeout_s, what, interval_s=None):
    """Polls `predicate` until it is true (returning its value); raises TimeoutError naming `what` after
    `timeout_s`. Polls back off from 5 ms to 100 ms, or come every `interval_s` when given (for predicates that
    are costly to run, e.g. a `systemctl` call)."""
    deadline = time.monotonic() + timeout_s
    delay = interval_s if interval_s is not None else 0.005
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(delay)
        if interval_s is None:
            delay = min(delay * 2, 0.1)


def exchange(conn, method, path, body=None, headers=None):
    """One request on `conn`, which it closes; returns (status, parsed JSON body, or {"raw": text}, or None)."""
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = {"raw": data.decode(errors="replace")}
        return resp.status, parsed
    finally:
        conn.close()


def wire_escape(data):
    """Percent-encodes a field the way the wire protocol wants (%, ;, CR, LF)."""
    if isinstance(data, str):
        data = data.encode()
    out = bytearray()
    for b in data:
        if b in (0x25, 0x3B, 0x0D, 0x0A):
            out += b"%%%02X" % b
        else:
            out.append(b)
    return bytes(out)


class Cluster:
    """A cluster described by a cluster.yaml; processes are started from `bin_dir`."""

    def __init__(self, config_path, run_dir, bin_dir=None, http_port=None, detached=False, https_port=None):
        import yaml  # PyYAML; installed by scripts/setup.sh

        self.config_path = os.path.abspath(config_path)
        with open(self.config_path) as f:
            self.config = yaml.safe_load(f)
        self.run_dir = os.path.abspath(run_dir)
        self.bin_dir = bin_dir or default_bin_dir()
        self.detached = detached
        self.procs = {}
        os.makedirs(os.path.join(self.run_dir, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.run_dir, "pids"), exist_ok=True)
        self.http_port = http_port or 8080
        # The bearer token http() sends when the request names none (the API needs one with security.tokens_file).
        self.token = None
        # (security.tls section, its ssl context), made on first use by link_tls_context().
        self._link_tls = None
        # nginx's HTTPS listener (TLS, HTTP/2), beside http_port.
        self.https_port = https_port or 8443
        # Whether nginx's per-address request limits count loopback clients too (the tests of those limits).
        self.limit_loopback = False

    @property
    def replica_ids(self):
        return [r["id"] for r in self.config["replicas"]]

    # ----- generated configurations for tests -------------------------------------------------------------

    @staticmethod
    def generate(root, replicas=3, timeouts=None, limits=None, storage=None, worker_threads=96, authenticated=True,
                 tokens=False, link_tls=False, watch=None, leases=None, availability=None):
        """Writes a cluster.yaml on free loopback ports under `root` and returns a Cluster for it; `authenticated`:
        with a cluster key (created on first start), as the shipped configuration has; `tokens`: the HTTP API
        needs bearer tokens (security.tokens_file: tokens.yaml, with an admin token the Cluster then sends);
        `link_tls`: mutual TLS on the cluster links (security.tls, a loopback CA made on first start)."""
        os.makedirs(root, exist_ok=True)
        lines = [
            "master:",
            "  id: m1",
            f"  listen: 127.0.0.1:{free_port()}",
            "  decision_log_dir: data/master",
            f"  query_listen: 127.0.0.1:{free_port()}",
            f"  worker_threads: {worker_threads}",
            "replicas:",
        ]
        for i in range(1, replicas + 1):
            lines += [f"  - id: r{i}", "    host: 127.0.0.1", f"    port: {free_port()}", f"    data_dir: data/r{i}"]
        for section, values in (("timeouts", timeouts), ("limits", limits), ("storage", storage), ("watch", watch),
                               ("leases", leases), ("availability", availability)):
            if values:
                lines.append(f"{section}:")
                lines += [f"  {k}: {v}" for k, v in values.items()]
        if authenticated or tokens:
            lines.append("security:")
        if authenticated:
            lines.append("  cluster_key_file: keys/cluster.key")
        if tokens:
            lines.append("  tokens_file: tokens.yaml")
        if link_tls:
            lines += ["  tls:", "    cert_file: keys/link-tls/node.crt", "    key_file: keys/link-tls/node.key",
                      "    ca_file: keys/link-tls/ca.crt"]
        path = os.path.join(root, "cluster.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        cluster = Cluster(path, os.path.join(root, "run"), http_port=free_port(), https_port=free_port())
        if tokens:
            cluster.token = cluster.add_token("harness", "admin")
        return cluster

    @property
    def tokens_path(self):
        name = (self.config.get("security") or {}).get("tokens_file")
        return os.path.join(os.path.dirname(self.config_path), name) if name else None

    def add_token(self, name, role, prefixes=()):
        """Adds a token to the tokens file (as scripts/kv-token does) and returns it; reload to use it if running."""
        import kvtoken
        token = kvtoken.make_token()
        kvtoken.save(self.tokens_path, kvtoken.load(self.tokens_path) + [kvtoken.entry(name, role, prefixes, token)])
        return token

    def write_config(self, config=None, text=None):
        """Replaces cluster.yaml with `config` (a dict, dumped as YAML) or raw `text`; reload to apply."""
        import yaml
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else yaml.safe_dump(config, sort_keys=False))
        if text is None:
            self.config = config

    def reload_master(self):
        """Asks the master to re-read cluster.yaml (POST /admin/reload); returns (status, body)."""
        return self.http("POST", "/admin/reload")

    RELOAD_ANSWER = re.compile(r"reload rejected|reload \d+ accepted: ")

    def reload_replica(self, rid, timeout_s=10):
        """SIGHUP to replica `rid` (what `systemctl reload kv-replica@ID` sends); waits for its answer in its log
        and returns that line ("reload N accepted: ..." or "reload rejected, ...")."""
        answers = lambda: [l for l in self.log(rid).splitlines() if self.RELOAD_ANSWER.search(l)]
        before = len(answers())
        pid = self._pid(rid)
        if pid is None:
            raise RuntimeError(f"replica {rid} is not running")
        os.kill(pid, signal.SIGHUP)
        return wait_until(lambda: answers()[before] if len(answers()) > before else None, timeout_s,
                          f"{rid} to answer its reload")

    def reload(self):
        """The documented order after an edit: every running replica first (so limits the master will accept
        already hold there), then the master. Returns ({rid: answer line}, (status, body) of the master's)."""
        replicas = {rid: self.reload_replica(rid) for rid in self.replica_ids if self.is_running(rid)}
        return replicas, self.reload_master()

    # ----- addresses ----------------------------------------------------------------------------------------

    def replica(self, rid):
        return next(r for r in self.config["replicas"] if r["id"] == rid)

    def master_listen(self):
        return str(self.config["master"]["listen"])

    # ----- processes ----------------------------------------------------------------------------------------

    def _spawn(self, name, argv, env=None):
        log = open(os.path.join(self.run_dir, "logs", f"{name}.log"), "ab")
        full_env = dict(os.environ)
        full_env.pop("KV_FAILPOINTS", None)
        full_env.update(env or {})
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=self.detached)
        log.close()
        self.procs[name] = proc
        with open(os.path.join(self.run_dir, "pids", f"{name}.pid"), "w") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def _pid(self, name):
        proc = self.procs.get(name)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        try:
            with open(os.path.join(self.run_dir, "pids", f"{name}.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def _signal(self, name, sig, wait_s=10.0):
        pid = self._pid(name)
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        proc = self.procs.get(name)
        if proc is not None:
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            def gone():
                try:
                    os.kill(pid, 0)
                    return False
                except ProcessLookupError:
                    return True
            try:
                wait_until(gone, wait_s, f"{name} (pid {pid}) to exit")
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
        try:
            os.remove(os.path.join(self.run_dir, "pids", f"{name}.pid"))
        except FileNotFoundError:
            pass

    def is_running(self, name):
        return self._pid(name) is not None

    def log(self, name):
        with open(os.path.join(self.run_dir, "logs", f"{name}.log"), errors="replace") as f:
            return f.read()

    @staticmethod
    def _require_free(host, port, what):
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            return
        raise RuntimeError(f"{what}: {host}:{port} is already in use by another process; stop it first")

    def start_replica(self, rid, env=None, wait=True):
        self.ensure_key()
        r = self.replica(rid)
        self._require_free(r["host"], r["port"], f"replica {rid}")
        self._spawn(rid, [os.path.join(self.bin_dir, "kv-replicad"), "--config", self.config_path, "--id", rid],
                    env)
        if wait:
            self.wait_replica_ready(rid)

    def stop_replica(self, rid):
        self._signal(rid, signal.SIGTERM)

    def kill_replica(self, rid):
        self._signal(rid, signal.SIGKILL)

    def pause(self, name):
        """SIGSTOP: the process keeps its sockets (connections stay up, nothing is answered), as a stalled disk or
        a long GC pause looks from outside. `resume` sends SIGCONT; a paused process still dies by SIGKILL."""
        os.kill(self._pid(name), signal.SIGSTOP)

    def resume(self, name):
        os.kill(self._pid(name), signal.SIGCONT)

    def wait_replica_ready(self, rid, timeout_s=30):
        def ready():
            if not self.is_running(rid):
                raise RuntimeError(f"replica {rid} exited; log:\n{self.log(rid)[-3000:]}")
            try:
                return self.stat(rid)
            except OSError:
                return None
        return wait_until(ready, timeout_s, f"replica {rid} to answer stat")

    def start_master(self, env=None, wait=True):
        host, port = self.master_listen().rsplit(":", 1)
        self._require_free(host, port, "master")
        self._spawn("master", [os.path.join(self.bin_dir, "kv-master"), "--config", self.config_path], env)
        if wait:
            self.wait_master_ready()

    def stop_master(self):
        self._signal("master", signal.SIGTERM)

    def kill_master(self):
        self._signal("master", signal.SIGKILL)

    def wait_master_ready(self, timeout_s=30):
        host, port = self.master_listen().rsplit(":", 1)

        def ready():
            if not self.is_running("master"):
                raise RuntimeError(f"master exited; log:\n{self.log('master')[-3000:]}")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(ready, timeout_s, "the master's FastCGI socket")

    @property
    def tls_dir(self):
        return os.path.join(os.path.dirname(self.config_path), "keys", "tls")

    def ensure_tls(self):
        """A self-signed certificate for the dev cluster's HTTPS listener (keys/tls/, made on first start)."""
        crt, key = os.path.join(self.tls_dir, "server.crt"), os.path.join(self.tls_dir, "server.key")
        if not os.path.exists(crt):
            os.makedirs(self.tls_dir, exist_ok=True)
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", key, "-out", crt], check=True, capture_output=True)
            os.chmod(key, 0o600)
        return crt, key

    def render_nginx(self):
        with open(SITE_FILE) as f:
            site = f.read()
        tmp = os.path.join(self.run_dir, "nginx")
        os.makedirs(tmp, exist_ok=True)
        crt, key = self.ensure_tls()
        site = site.replace("server 127.0.0.1:9000;", f"server {self.master_listen()};")
        site = site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.http_port};")
        site = site.replace("listen 8443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;")
        site = site.replace("/etc/kv/tls/server.crt", crt).replace("/etc/kv/tls/server.key", key)
        site = site.replace("/etc/nginx/snippets/kv-locations.conf", os.path.join(tmp, "kv-locations.conf"))
        if self.limit_loopback:
            # For the tests of the limits: loopback clients are counted like any other.
            site = site.replace("    127.0.0.0/8 0;\n", "").replace("    ::1 0;\n", "")
        with open(LOCATIONS_FILE) as src, open(os.path.join(tmp, "kv-locations.conf"), "w") as dst:
            dst.write(src.read())
        with open(os.path.join(tmp, "kv-site.conf"), "w") as f:
            f.write(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        # Watchers hold a client and an upstream connection each (watch.watchers_max, 10,000 by default), and
        # one worker may accept most of them.
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        main = f"""{user}worker_processes 2;
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log {self.run_dir}/logs/nginx-error.log warn;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    include {tmp}/kv-site.conf;
}}
"""
        path = os.path.join(tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(main)
        return path

    def start_nginx(self, wait=True):
        self._require_free("127.0.0.1", self.http_port, "nginx")
        self._require_free("127.0.0.1", self.https_port, "nginx (https)")
        conf = self.render_nginx()
        self._spawn("nginx", ["nginx", "-e", os.path.join(self.run_dir, "logs", "nginx-error.log"), "-p",
                              os.path.join(self.run_dir, "nginx"), "-c", conf, "-g", "daemon off;"])
        if wait:
            def ready():
                if not self.is_running("nginx"):
                    raise RuntimeError(f"nginx exited; log:\n{self.log('nginx')[-3000:]}")
                try:
                    return self.http("GET", "/ping")[0] == 200
                except OSError:
                    return False
            wait_until(ready, 30, "nginx to answer GET /ping")

    def stop_nginx(self):
        self._signal("nginx", signal.SIGQUIT)

    @property
    def key_path(self):
        """The cluster key file cluster.yaml names (absolute), or None."""
        name = (self.config.get("security") or {}).get("cluster_key_file")
        return os.path.join(os.path.dirname(self.config_path), name) if name else None

    def ensure_key(self):
        """Creates the cluster key on first start (256 random bits, hex, mode 0600), as scripts/cluster.sh does, and
        the loopback link certificates when cluster.yaml names security.tls files that do not exist yet."""
        linkpki.ensure_dev_files(self.config, os.path.dirname(self.config_path))
        path = self.key_path
        if path and not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex() + "\n")

    def link_tls_context(self):
        """The ssl context the cluster links take (None: plain TCP); made once per security.tls section."""
        section = repr((self.config.get("security") or {}).get("tls"))
        cached = self._link_tls
        if cached is None or cached[0] != section:
            cached = (section, client_tls_context(self.config, os.path.dirname(self.config_path)))
            self._link_tls = cached
        return cached[1]

    def wire_key(self, role="master"):
        """The key this harness proves `role` with (None when the cluster's links are not authenticated)."""
        path = self.key_path
        return role_key(read_key(path), role) if path else None

    def start(self):
        self.ensure_key()
        for rid in self.replica_ids:
            self.start_replica(rid, wait=False)
        for rid in self.replica_ids:
            self.wait_replica_ready(rid)
        self.start_master()
        self.start_nginx()
        self.wait_cluster_ready()

    def wait_cluster_ready(self, timeout_s=30):
        """Waits until GET /status shows every configured replica up and in sync (a new cluster bootstraps)."""
        def ready():
            try:
                status, body = self.http("GET", "/status")
            except OSError:
                return False
            return status == 200 and body["status"] and all(r.get("joined") for r in body["replicas"]
                                                            if r.get("state") != "removed")
        wait_until(ready, timeout_s, "every replica to be up and in sync (GET /status)")

    def stop(self):
        self.stop_nginx()
        self.stop_master()
        for rid in self.replica_ids:
            self.stop_replica(rid)

    def kill_all(self):
        """Stops every process this object started, by PID, whatever state it is in. nginx gets SIGTERM (its
        fast shutdown) so its workers exit with it; SIGKILL on the nginx master would orphan them."""
        for name in list(self.procs):
            self._signal(name, signal.SIGTERM if name == "nginx" else signal.SIGKILL)

    # ----- talking to it ------------------------------------------------------------------------------------

    def http(self, method, path, body=None, headers=None, timeout_s=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout_s)
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        return exchange(conn, method, path, body, headers)

    def wire(self, rid, *lines, role="master"):
        """Sends wire lines to replica `rid` (authenticated as `role` when the cluster has a key); the replies."""
        r = self.replica(rid)
        client = WireClient(r["host"], int(r["port"]), key=self.wire_key(role), role=role, client_id="tests",
                            expected_server=rid, tls=self.link_tls_context())
        try:
            return client.call(*lines)
        finally:
            client.close()

    def wrk(self, script, connections, seconds, env=None, timeout_s="5s"):
        """Runs wrk with one of bench/lua's scripts (`get.lua`, `put.lua`: they print a `KV_WRK_SUMMARY` JSON
        line) against this cluster's nginx for `seconds`, with `env` for the script (KV_KEYS, ...); returns the
        summary: requests, non2xx, socket_errors, duration_us, latency percentiles and max in microseconds."""
        lua = os.path.join(REPO, "bench", "lua")
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", timeout_s, "-s", os.path.join(lua, script),
             f"http://127.0.0.1:{self.http_port}"],
            capture_output=True, text=True, env=dict(os.environ, KV_LUA_DIR=lua, **(env or {})), check=True,
            timeout=seconds + 60)
        line = next(l for l in out.stdout.splitlines() if l.startswith("KV_WRK_SUMMARY "))
        return json.loads(line.split(" ", 1)[1])

    def stat(self, rid):
        return self.wire(rid, ";stat;;")[0]

    def preload(self, keys, value_bytes=32, key_format=b"key%d", timeout_s=300):
        """Writes `keys` keys straight into every replica (prepare + commit, pipelined; fast, and identical
        everywhere). Replicas take 2PC commands only from their newest master (their fence), so this loads as a
        master that takes over at the next seq epoch, with the master stopped; the master, started again, takes
        over in turn (it is restarted if it was running)."""
        was_running = self.is_running("master")
        if was_running:
            self.stop_master()
        epoch = self._takeover_epoch()
        value = b"p" * value_bytes
        for rid in self.replica_ids:
            r = self.replica(rid)
            client = WireClient(r["host"], int(r["port"]), timeout_s=timeout_s, key=self.wire_key("master"),
                                role="master", client_id="preload", expected_server=rid, epoch=epoch,
                                tls=self.link_tls_context())
            try:
                for start in range(0, keys, 4000):
                    lines = []
                    for i in range(start, min(keys, start + 4000)):
                        seq = epoch * SEQS_PER_EPOCH + i + 1
                        lines += [b"%d;put;%s;%s" % (seq, key_format % i, value), b"%d;com;;" % seq]
                    replies = client.call(*lines)
                    assert all(r["status"] for r in replies), [r for r in replies if not r["status"]][:3]
            finally:
                client.close()
        if was_running:
            self.start_master()
            self.wait_cluster_ready()


    def _takeover_epoch(self):
        """A seq epoch above every fence and seq the replicas hold: a master of it is obeyed by all of them."""
        stats = [self.stat(rid) for rid in self.replica_ids]
        return max(max(s.get("fence_epoch", 0), s.get("max_seq", 0) // SEQS_PER_EPOCH) for s in stats) + 1

    def write_behind_the_master(self, lines_by_replica):
        """Sends 2PC lines straight to single replicas, as a master of a new seq epoch, with the master stopped
        (restarted after if it was running): for tests that plant a divergence no real write could make.
        `lines_by_replica` maps a replica id to lines with `{seq:N}` standing for the epoch's N-th seq."""
        was_running = self.is_running("master")
        if was_running:
            self.stop_master()
        epoch = self._takeover_epoch()
        for rid, lines in lines_by_replica.items():
            r = self.replica(rid)
            client = WireClient(r["host"], int(r["port"]), key=self.wire_key("master"), role="master",
                                client_id="planted", expected_server=rid, epoch=epoch, tls=self.link_tls_context())
            try:
                encoded = [re.sub(r"\{seq:(\d+)\}", lambda m: str(epoch * SEQS_PER_EPOCH + int(m.group(1))), line)
                           .encode() for line in lines]
                replies = client.call(*encoded)
                assert all(reply["status"] for reply in replies), (rid, replies)
            finally:
                client.close()
        if was_running:
            self.start_master()
            self.wait_cluster_ready()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status", "reload", "start-replica", "stop-replica",
                                            "kill-replica"])
    parser.add_argument("replica", nargs="?", help="replica id, for the *-replica commands")
    parser.add_argument("--config", default=os.path.join(REPO, "cluster.yaml"))
    parser.add_argument("--run-dir", default=os.path.join(REPO, "run"))
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--https-port", type=int, default=8443)
    args = parser.parse_args()
    try:
        cluster = Cluster(args.config, args.run_dir, http_port=args.http_port, detached=True, https_port=args.https_port)
    except Exception as exc:  # noqa: BLE001 (any parse error: say it and stop)
        if args.command != "reload":
            raise
        sys.exit(f"{args.config} does not parse ({exc}); nothing was reloaded: every process would refuse it too")
    names = ["nginx", "master"] + cluster.replica_ids
    if args.command == "start":
        running = [n for n in names if cluster.is_running(n)]
        if running:
            sys.exit(f"already running: {', '.join(running)} (scripts/cluster.sh stop first)")
        cluster.start()
        base = f"http://127.0.0.1:{cluster.http_port}"
        print(f"kv is up: nginx {base} -> kv-master {cluster.master_listen()} -> "
              f"{', '.join(cluster.replica_ids)}")
        print(f"logs in {cluster.run_dir}/logs, data as in {cluster.config_path}\n")
        print("try:")
        print(f"  curl -s -X PUT --data-binary 'hello' {base}/kv/greeting")
        print(f"  curl -s {base}/kv/greeting")
        print(f"  curl -s -X DELETE {base}/kv/greeting")
        print(f"  curl -s -X POST --data-binary 'put;colour;blue' {base}/kv")
        print(f"  curl -s {base}/status")
        print(f"  curl -s --http2 --cacert {os.path.relpath(cluster.ensure_tls()[0])} "
              f"https://127.0.0.1:{cluster.https_port}/ping")
        print("stop with: scripts/cluster.sh stop")
    elif args.command == "stop":
        cluster.stop()
        print("kv stopped")
    elif args.command == "reload":
        replicas, (status, body) = cluster.reload()
        for rid, line in replicas.items():
            print(f"{rid}: {line.split('] ', 1)[-1]}")
        print(f"master: {status} {body.get('message') if body else ''}")
        if status != 200 or any("rejected" in line for line in replicas.values()):
            sys.exit(1)
    elif args.command.endswith("-replica"):
        if args.replica not in cluster.replica_ids:
            sys.exit(f"name a replica: one of {', '.join(cluster.replica_ids)}")
        if args.command == "start-replica":
            cluster.start_replica(args.replica)
            print(f"{args.replica} is up")
        elif args.command == "stop-replica":
            cluster.stop_replica(args.replica)
            print(f"{args.replica} stopped (SIGTERM)")
        else:
            cluster._signal(args.replica, signal.SIGKILL)
            print(f"{args.replica} killed (SIGKILL)")
    else:
        for n in names:
            print(f"{n}: {'running' if cluster.is_running(n) else 'stopped'}")


if __name__ == "__main__":
    main()
