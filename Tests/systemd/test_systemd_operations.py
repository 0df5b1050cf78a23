"""The admin's walk-through of docs/OPERATIONS.md ("Running under systemd"), step by step, under a real systemd:
install, start, stop a replica and watch the failure, bring it back, SIGKILL a replica under load, restart
the master under load, reload an edited config, read the journal, stop, uninstall (data kept), reinstall.
Only systemctl/journalctl, the install scripts and HTTP through nginx drive it; replicas are read over the
wire protocol to check their data. The tests run in order and share one booted system."""
import os
import threading
import time

import yaml

from nsystemd import REPORT, wait_until
import kvwire  # noqa: E402  (nsystemd puts scripts/ on the path)

REPLICAS = ["r1", "r2", "r3"]
KV_UNITS = ["kv.target", "kv-master.socket", "kv-master.service"] + [f"kv-replica@{r}.service" for r in REPLICAS]
# Host paths the install writes (inside the namespaces only): the host's must not change.
INSTALLED_PATHS = ["/usr/local/bin/kv-master", "/usr/local/bin/kv-replicad", "/etc/systemd/system/kv.target",
                   "/etc/systemd/system/kv-master.socket", "/etc/systemd/system/kv-master.service",
                   "/etc/systemd/system/kv-replica@.service", "/etc/kv/cluster.yaml",
                   "/etc/nginx/sites-available/kv.conf", "/etc/nginx/sites-enabled/kv.conf", "/var/lib/kv",
                   "/usr/local/share/doc/kv"]


def host_state(paths):
    state = {}
    for path in paths:
        try:
            st = os.lstat(path)
            state[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            state[path] = None
    return state


def config(system):
    return yaml.safe_load(system.read_file("/etc/kv/cluster.yaml"))


def replica_port(system, rid):
    return next(int(r["port"]) for r in config(system)["replicas"] if r["id"] == rid)


def wire_escape(data):
    out = bytearray()
    for b in data.encode() if isinstance(data, str) else data:
        out += b"%%%02X" % b if b in (0x25, 0x3B, 0x0D, 0x0A) else bytes([b])
    return bytes(out)


def replica_values(system, rid, keys):
    """key -> value (or None) read from one replica directly, over the wire protocol."""
    port = replica_port(system, rid)
    out = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        replies = system.wire(port, *[b";get;" + wire_escape(k) + b";" for k in chunk])
        for key, reply in zip(chunk, replies):
            assert reply["server"] == rid, reply
            assert reply["status"] or reply["code"] == "not_found", reply
            out[key] = reply["message"] if reply["status"] else None
    return out


def assert_replicas_hold(system, expected):
    """Every replica holds every acknowledged write; their contents are identical (equal digests)."""
    keys = sorted(expected)

    def missing():
        out = {}
        for rid in REPLICAS:
            got = replica_values(system, rid, keys)
            out.update({(rid, k): (expected[k], got[k]) for k in keys if got[k] != expected[k]})
        return out
    # A write acknowledged while a replica was down is delivered to it when it is back (commit re-sent).
    try:
        wait_until(lambda: not missing(), 10, "every replica to hold every acknowledged write", interval_s=0.2)
    except TimeoutError:
        lacking = missing()
        raise AssertionError(f"{len(lacking)} acknowledged writes missing, e.g. {list(lacking.items())[:5]}")

    def settled():
        stats = [system.wire(replica_port(system, rid), ";stat;;")[0] for rid in REPLICAS]
        return stats if len({s["digest"] for s in stats}) == 1 and not any(s["in_doubt"] for s in stats) else None
    wait_until(settled, 10, "equal digests and no in-doubt transaction on every replica")


class Writers:
    """Threads writing fresh keys through nginx as fast as they are answered; remembers each answer."""

    def __init__(self, system, prefix, threads=4):
        self.system = system
        self.prefix = prefix
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}           # key -> value, for every 200
        self.results = []         # (start, end, status or None, message)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index):
        n = 0
        while not self.stop_event.is_set():
            key, value = f"{self.prefix}-{index}-{n}", f"value {n} of writer {index}"
            n += 1
            started = time.monotonic()
            try:
                status, body = self.system.http("PUT", f"/kv/{key}", body=value.encode(), timeout_s=30)
                message = (body or {}).get("message", "")
            except OSError as exc:
                status, message = None, f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.results.append((started, time.monotonic(), status, message))
                if status == 200:
                    self.acked[key] = value

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def wait_for_acks(self, more, timeout_s=30):
        target = self.acked_count() + more
        wait_until(lambda: self.acked_count() >= target, timeout_s, f"{more} more acknowledged writes")

    def failures(self):
        return [r for r in self.results if r[2] != 200]

    def error_window(self):
        """Seconds from the first failed request's start to the last failed request's end (0 if none)."""
        failed = self.failures()
        return max(r[1] for r in failed) - min(r[0] for r in failed) if failed else 0.0


def wait_restarted(system, unit, old_pid, timeout_s=30):
    def restarted():
        pid = system.show(unit, "MainPID")
        return system.is_active(unit) == "active" and pid not in ("0", old_pid)
    wait_until(restarted, timeout_s, f"systemd to restart {unit}", interval_s=0.1)


# ----- the walk-through ---------------------------------------------------------------------------------------

def test_install(system):
    before = host_state(INSTALLED_PATHS)
    out = system.run("/run/kvtest/src/scripts/install.sh", env={"KV_BIN_DIR": "/run/kvtest/bin"}).stdout
    assert "install: wrote /etc/kv/cluster.yaml" in out, out
    assert "install: wrote /etc/kv/cluster.key" in out, out
    assert "install: wrote /etc/kv/tokens.yaml" in out, out
    for path in INSTALLED_PATHS[:-2] + ["/usr/local/share/doc/kv/OPERATIONS.md"]:
        assert system.exists(path), path
    assert system.run("readlink", "/etc/nginx/sites-enabled/kv.conf").stdout.strip() == "../sites-available/kv.conf"
    site = system.read_file("/etc/nginx/sites-available/kv.conf")
    assert "server unix:/run/kv/master.sock;" in site and "listen 127.0.0.1:8080;" in site
    cfg = config(system)
    assert cfg["master"]["listen"] == "/run/kv/master.sock"
    assert cfg["master"]["query_listen"].startswith("127.0.0.1:")
    assert cfg["master"]["decision_log_dir"] == "/var/lib/kv/master"
    assert cfg["security"]["cluster_key_file"] == "/etc/kv/cluster.key"
    assert system.run("stat", "-c", "%U %a", "/etc/kv/cluster.key").stdout.strip() == "root 600"
    assert cfg["security"]["tokens_file"] == "/etc/kv/tokens.yaml"
    assert system.run("stat", "-c", "%U %a", "/etc/kv/admin.token").stdout.strip() == "root 600"
    assert system.run("stat", "-c", "%U %a", "/etc/kv/tokens.yaml").stdout.strip() == "root 644"
    assert system.read_file("/etc/kv/admin.token").strip() not in system.read_file("/etc/kv/tokens.yaml")
    assert [(r["id"], r["data_dir"]) for r in cfg["replicas"]] == [(r, f"/var/lib/kv/{r}") for r in REPLICAS]
    for unit in KV_UNITS:
        assert system.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
    assert system.is_active("kv-master.service") == "inactive"   # installed, not started
    # Running it again changes nothing and keeps the admin's configuration.
    system.run("sh", "-c", "echo '# edited by the admin' >> /etc/kv/cluster.yaml")
    out = system.run("/run/kvtest/src/scripts/install.sh", env={"KV_BIN_DIR": "/run/kvtest/bin"}).stdout
    assert "kept your /etc/kv/cluster.yaml" in out, out
    assert system.read_file("/etc/kv/cluster.yaml").endswith("# edited by the admin\n")
    assert host_state(INSTALLED_PATHS) == before, "the install inside the namespaces changed the host"


def test_start(system):
    started = time.monotonic()
    system.systemctl("start", "kv.target")
    REPORT.append(f"systemctl start kv.target: {time.monotonic() - started:.2f}s until every unit was ready")
    for unit in KV_UNITS:
        assert system.is_active(unit) == "active", unit
    status, body = system.http("GET", "/status")
    assert status == 200, body
    assert [(r["id"], r["up"]) for r in body["replicas"]] == [(r, True) for r in REPLICAS], \
        f"the master cannot reach every replica: {[(r['id'], r.get('error')) for r in body['replicas']]}"
    assert body["status"] is True, body
    status, body = system.http("PUT", "/kv/greeting", body=b"hello")
    assert status == 200, body
    status, body = system.http("GET", "/kv/greeting")
    assert status == 200 and body["message"] == "hello", body
    # Readiness came from the daemons (Type=notify, STATUS=), the socket belongs to systemd and nginx's group,
    # the daemons run as the dynamic user kv without capabilities.
    assert system.show("kv-replica@r1.service", "StatusText").startswith("serving on 127.0.0.1:")
    assert system.show("kv-master.service", "StatusText").startswith("serving on systemd socket")
    assert system.run("stat", "-c", "%U:%G %a", "/run/kv/master.sock").stdout.strip() == "root:www-data 660"
    for unit in ("kv-master.service", "kv-replica@r1.service"):
        pid = system.show(unit, "MainPID")
        owner = system.run("ps", "-o", "user=,uid=", "-p", pid).stdout.split()
        assert owner[0] == "kv" and owner[1] != "0", (unit, owner)
        caps = system.run("grep", "CapEff", f"/proc/{pid}/status").stdout.split()[1]
        assert int(caps, 16) == 0, (unit, caps)
    assert system.exists("/var/lib/kv/r1") and system.exists("/var/lib/kv/master")


def test_the_installed_links_are_authenticated(system):
    """The attacks of the security issue against the install: nothing a stranger sends to a replica port or the
    query port is executed, and the data stays as it was."""
    for unit, copy in (("kv-replica@r1.service", "/run/kv/replica-r1/cluster.key"),
                       ("kv-master.service", "/run/kv/master-key/cluster.key")):
        # Each daemon reads a copy of the root-owned key handed to its dynamic user.
        uid = system.run("ps", "-o", "uid=", "-p", system.show(unit, "MainPID")).stdout.strip()
        assert system.run("stat", "-c", "%u %a", copy).stdout.split() == [uid, "400"], unit
    assert "security.cluster_key_file is not set" not in system.journal("kv-replica@r1")
    cfg = config(system)
    ports = {r["id"]: int(r["port"]) for r in cfg["replicas"]}
    before = [system.wire(port, ";stat;;")[0]["digest"] for port in ports.values()]
    attacks = [(ports["r2"], b"123456789012;put;greeting;intruder\n123456789012;com;;\n"),
               (ports["r3"], b";reset;;\n;join;;\n"),
               (int(cfg["master"]["query_listen"].rsplit(":", 1)[1]), b"1000000001;qry;;\n")]
    for port, payload in attacks:
        replies = system.raw_wire(port, payload)
        assert len(replies) == 1 and replies[0]["code"] == "unauthorized", (port, replies)
    assert [system.wire(port, ";stat;;")[0]["digest"] for port in ports.values()] == before
    status, body = system.http("GET", "/kv/greeting")
    assert status == 200 and body["message"] == "hello", body
    # With the key, but as a master older than the fence, or past the running master's epoch: refused.
    stat = system.wire(ports["r1"], ";stat;;")[0]
    epoch, master = stat["fence_epoch"], stat["fence_master"]
    assert epoch >= 1 and master.startswith("m1/"), stat
    stale = system.wire(ports["r1"], f"{epoch * 10**9 - 5};put;greeting;stale", f"{epoch * 10**9 - 5};com;;",
                        client_id="m-old", epoch=epoch - 1)
    assert [r["code"] for r in stale] == ["fenced", "fenced"], stale
    beyond = system.wire(ports["r1"], "18446744073709551615;abrt;;", f"{(epoch + 1) * 10**9 + 1};abrt;;",
                         client_id=master, epoch=epoch)
    assert [r["code"] for r in beyond] == ["bad_request", "bad_request"], beyond
    assert [system.wire(port, ";stat;;")[0]["digest"] for port in ports.values()] == before
    status, body = system.http("GET", "/status?verify=1")
    assert status == 200 and body["verify"]["identical"], body
    # The HTTP API needs a token in the install: without one every endpoint but /ping is 401.
    for method, path in (("GET", "/kv/greeting"), ("PUT", "/kv/greeting"), ("GET", "/status?verify=1"),
                         ("POST", "/admin/reload")):
        status, body = system.http(method, path, body=b"x" if method == "PUT" else None, token=False)
        assert status == 401 and body["status"] is False, (method, path, body)
    assert system.http("GET", "/ping", token=False)[0] == 200


def test_https_with_http2_and_the_admin_token(system):
    token = system.read_file("/etc/kv/admin.token").strip()
    out = system.run("curl", "-sS", "--http2", "--cacert", "/etc/kv/tls/server.crt", "-H", f"Authorization: Bearer {token}",
                     "-w", "\n%{http_version} %{http_code}", "https://127.0.0.1:8443/kv/greeting").stdout
    body, meta = out.rsplit("\n", 1)
    assert meta == "2 200" and '"message":"hello"' in body, out
    out = system.run("curl", "-sS", "--cacert", "/etc/kv/tls/server.crt", "-w", "\n%{http_code}",
                     "https://127.0.0.1:8443/kv/greeting").stdout
    assert out.endswith("\n401"), out


def rss_bytes(system, unit):
    status = system.read_file(f"/proc/{system.show(unit, 'MainPID')}/status")
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def test_a_connection_flood_and_a_reader_that_never_reads_leave_a_replica_bounded(system):
    """Against the installed limits (limits.replica_connections_max 1024, handshake time-out 5 s): a flood past the
    limit is refused, a reader that pipelines gets of a 1 MiB value without reading them is paused, and the
    replica's memory stays under the bounds stated here while the cluster keeps taking writes."""
    big = b"b" * (1 << 20)
    assert system.http("PUT", "/kv/big", body=big)[0] == 200
    port = replica_port(system, "r2")
    baseline = rss_bytes(system, "kv-replica@r2.service")
    flood = []
    try:
        for _ in range(1100):
            flood.append(system._sockets.connect("127.0.0.1", port, 10))
        answers = [sock.recv(4096) for sock in flood[1030:]]
        refused = sum(1 for answer in answers if b"too many connections" in answer)
        assert refused == len(flood) - 1030, (refused, answers[:3])
        grown = rss_bytes(system, "kv-replica@r2.service") - baseline
        assert grown < 64 << 20, f"r2 grew by {grown >> 20} MiB for a flood of unauthenticated connections"
        status, body = system.http("PUT", "/kv/during-flood", body=b"v")
        assert status == 200, body
    finally:
        for sock in flood:
            sock.close()
    REPORT.append(f"flood of 1100 connections on r2: {refused} refused past the limit, RSS +{grown >> 20} MiB")

    key = system.role_key("operator")
    sock = system._sockets.connect("127.0.0.1", port, 10)
    try:
        f = sock.makefile("rwb")
        kvwire.handshake(f, key, "operator", "slow-reader")
        request = b";get;big;\n" * 400   # 400 MiB of replies if the replica buffered them
        sent = 0
        sock.settimeout(3)
        deadline = time.monotonic() + 10
        while sent < len(request) and time.monotonic() < deadline:
            try:
                sent += sock.send(request[sent:])
            except TimeoutError:
                break
        assert system.http("PUT", "/kv/during-slow-reader", body=b"v")[0] == 200
        grown = rss_bytes(system, "kv-replica@r2.service") - baseline
        assert grown < 96 << 20, f"r2 grew by {grown >> 20} MiB for one reader that does not read"
        REPORT.append(f"a reader of 400 x 1 MiB replies that never reads: r2 RSS +{grown >> 20} MiB")
        sock.settimeout(30)
        for _ in range(sent // len(b";get;big;\n")):
            line = f.readline()
            assert line.startswith(b'{"status":true'), line[:200]
    finally:
        sock.close()
    status, body = system.http("GET", "/status?verify=1")
    assert status == 200 and body["verify"]["identical"], body


def test_link_tls_under_systemd(system):
    """The operator's path of docs/OPERATIONS.md (Link TLS) on the install: make a CA and this host's
    certificate, name them in cluster.yaml, restart; every link is then mutual TLS, the units hand the key to
    their dynamic user, a plain connection gets nothing executed; then back to plain links."""
    original = system.read_file("/etc/kv/cluster.yaml")
    system.run("python3", "/run/kvtest/src/scripts/linkpki.py", "ca", "/root/link-ca")
    system.run("python3", "/run/kvtest/src/scripts/linkpki.py", "node", "/etc/kv/link-tls", "--ca", "/root/link-ca",
               "--san", "IP:127.0.0.1")
    system.run("cp", "/root/link-ca/ca.crt", "/etc/kv/link-tls/ca.crt")
    assert system.run("stat", "-c", "%U %a", "/etc/kv/link-tls/node.key").stdout.split() == ["root", "600"]
    tls = ("  tls:\n    cert_file: /etc/kv/link-tls/node.crt\n    key_file: /etc/kv/link-tls/node.key\n"
           "    ca_file: /etc/kv/link-tls/ca.crt\n")
    assert "  cluster_key_file: /etc/kv/cluster.key\n" in original
    system.write_file("/etc/kv/cluster.yaml", original.replace("  cluster_key_file: /etc/kv/cluster.key\n",
                                                               "  cluster_key_file: /etc/kv/cluster.key\n" + tls))
    try:
        system.systemctl("restart", "kv.target")
        for unit in KV_UNITS:
            assert system.is_active(unit) == "active", unit
        for unit, copy in (("kv-replica@r1.service", "/run/kv/replica-r1/link-tls.key"),
                           ("kv-master.service", "/run/kv/master-key/link-tls.key")):
            uid = system.run("ps", "-o", "uid=", "-p", system.show(unit, "MainPID")).stdout.strip()
            assert system.run("stat", "-c", "%u %a", copy).stdout.split() == [uid, "400"], unit
        assert "(mutual TLS)" in system.journal("kv-replica@r3")
        wait_until(lambda: system.http("GET", "/status")[1].get("status"), 20, "the master to reach every replica")
        status, body = system.http("PUT", "/kv/over-tls", body=b"sealed")
        assert status == 200, body
        for _ in range(3):
            status, body = system.http("GET", "/kv/over-tls")
            assert status == 200 and body["message"] == "sealed", body
        port = replica_port(system, "r2")
        before = system.wire(port, ";stat;;")[0]["digest"]   # through TLS (link_tls_context)
        sock = system._sockets.connect("127.0.0.1", port, 10)
        try:
            sock.sendall(b"123456789012;put;over-tls;intruder\n123456789012;com;;\n")
            answer = b""
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        finally:
            sock.close()
        assert b"{" not in answer, answer
        assert system.wire(port, ";stat;;")[0]["digest"] == before
        status, body = system.http("GET", "/status?verify=1")
        assert status == 200 and body["verify"]["identical"], body
    finally:
        system.write_file("/etc/kv/cluster.yaml", original)
        system.systemctl("restart", "kv.target")
    wait_until(lambda: system.http("GET", "/status")[1].get("status"), 20, "the master to reach every replica")
    status, body = system.http("GET", "/kv/over-tls")
    assert status == 200 and body["message"] == "sealed", body


def test_stop_a_replica(system):
    keys = [f"before-stop-{i}" for i in range(20)]
    for key in keys:
        assert system.http("PUT", f"/kv/{key}", body=key.encode())[0] == 200
    system.systemctl("stop", "kv-replica@r2")
    assert system.is_active("kv-replica@r2.service") == "inactive"
    # Writes answer 503 naming r2; nothing is written.
    status, body = system.http("PUT", "/kv/before-stop-0", body=b"changed")
    assert status == 503, body
    assert "r2" in body["message"] and "retrying is safe" in body["message"], body
    # Reads keep working from the other replicas.
    for _ in range(10):
        status, body = system.http("GET", "/kv/before-stop-0")
        assert status == 200 and body["message"] == "before-stop-0" and body["server"] != "r2", body
    # Watching the failure: /status, systemctl status, the journal.
    status, body = system.http("GET", "/status")
    assert [r["id"] for r in body["replicas"] if not r["up"]] == ["r2"], body
    out = system.systemctl("status", "kv-replica@r2", check=False)
    assert out.returncode == 3 and "inactive (dead)" in out.stdout, out.stdout
    assert "replica r2 stopped" in system.journal("kv-replica@r2")


def test_bring_the_replica_back(system):
    system.systemctl("start", "kv-replica@r2")
    assert system.is_active("kv-replica@r2.service") == "active"
    status, body = system.http("PUT", "/kv/after-start", body=b"back")
    assert status == 200, body
    expected = {f"before-stop-{i}": f"before-stop-{i}" for i in range(20)}
    expected.update({"greeting": "hello", "after-start": "back"})
    assert_replicas_hold(system, expected)


def test_replica_sigkill_under_load_is_restarted_and_loses_nothing(system):
    old_pid = system.show("kv-replica@r1.service", "MainPID")
    restarts = int(system.show("kv-replica@r1.service", "NRestarts"))
    with Writers(system, "kill-r1") as writers:
        writers.wait_for_acks(200)
        killed = time.monotonic()
        system.systemctl("kill", "-s", "KILL", "kv-replica@r1")
        wait_restarted(system, "kv-replica@r1.service", old_pid)
        back = time.monotonic() - killed
        writers.wait_for_acks(200)
    assert int(system.show("kv-replica@r1.service", "NRestarts")) == restarts + 1
    journal = system.journal("kv-replica@r1")
    assert "status=9/KILL" in journal and "Scheduled restart job" in journal, journal[-3000:]
    # While r1 was down, writes failed cleanly (503 naming r1, nothing written); none hung.
    for _, _, status, message in writers.failures():
        assert status == 503 and "r1" in message, (status, message)
    REPORT.append(f"systemctl kill -s KILL kv-replica@r1 under load: back after {back:.2f}s, "
                  f"{len(writers.acked)} writes acknowledged, {len(writers.failures())} answered 503")
    assert_replicas_hold(system, writers.acked)


def availability(system):
    return system.http("GET", "/status")[1]["availability"]


def test_with_ejection_on_a_replica_sigkill_costs_at_most_eject_after_ms_of_503s(system):
    """The one line of cluster.yaml that turns ejection on, applied by `systemctl reload kv-master`: a replica
    killed under load is ejected (writes go on without it), and when systemd has restarted it, it is resynced and
    rejoins with an identical digest. Then the shipped strict mode again."""
    original = system.read_file("/etc/kv/cluster.yaml")
    assert "  eject_after_ms: 0\n" in original
    system.write_file("/etc/kv/cluster.yaml", original.replace("  eject_after_ms: 0\n", "  eject_after_ms: 500\n"))
    system.systemctl("reload", "kv-master")
    wait_until(lambda: availability(system)["eject_after_ms"] == 500, 10, "ejection to be on")
    joined = system.wire(replica_port(system, "r2"), ";stat;;")[0]["joined_since"]
    old_pid = system.show("kv-replica@r2.service", "MainPID")
    try:
        with Writers(system, "eject-r2") as writers:
            writers.wait_for_acks(200)
            killed = time.monotonic()
            system.systemctl("kill", "-s", "KILL", "kv-replica@r2")
            wait_restarted(system, "kv-replica@r2.service", old_pid)

            def rejoined():
                replicas = system.http("GET", "/status")[1]["replicas"]
                return next(r for r in replicas if r["id"] == "r2")["state"] == "up"
            wait_until(rejoined, 60, "r2 to be resynced and rejoin", interval_s=0.1)
            back = time.monotonic() - killed
            writers.wait_for_acks(200)
        window = writers.error_window()
        for _, _, status, message in writers.failures():
            assert status == 503 and "r2" in message, (status, message)
        assert window <= 0.5 + 1.0, window
        assert availability(system)["ejections"][0]["replica"] == "r2"
        assert system.wire(replica_port(system, "r2"), ";stat;;")[0]["joined_since"] > joined, "r2 was resynced"
        assert "ejected r2 after 500 ms" in system.journal("kv-master")
        REPORT.append(f"with eject_after_ms 500, systemctl kill -s KILL kv-replica@r2 under load: 503 for "
                      f"{window:.2f}s ({len(writers.failures())} writes), {len(writers.acked)} acknowledged; r2 "
                      f"resynced and in again {back:.2f}s after the kill")
        assert_replicas_hold(system, writers.acked)
    finally:
        system.write_file("/etc/kv/cluster.yaml", original)
        system.systemctl("reload", "kv-master")
    wait_until(lambda: availability(system)["eject_after_ms"] == 0, 10, "strict mode again")


def test_master_restart_under_load_fails_cleanly_resumes_and_loses_nothing(system):
    old_pid = system.show("kv-master.service", "MainPID")
    with Writers(system, "restart-master") as writers:
        writers.wait_for_acks(200)
        system.systemctl("restart", "kv-master")
        wait_restarted(system, "kv-master.service", old_pid)
        writers.wait_for_acks(200)
    window = writers.error_window()
    statuses = sorted({r[2] for r in writers.failures()}, key=str)
    REPORT.append(f"systemctl restart kv-master under load: {len(writers.failures())} failed requests "
                  f"(HTTP {statuses}) within {window:.2f}s; {len(writers.acked)} writes acknowledged")
    # How long clients saw errors is a figure (REPORT, docs/PERFORMANCE.md), not a bound: on a shared machine
    # it measured the machine. What must hold: writes resumed (200 more acknowledged above), every failure was
    # one of these clean answers, and nothing acknowledged was lost.
    # 502: the request was on a connection the old master dropped. 409: nginx re-sent a PUT the old master had
    # prepared but not decided, and the replicas still held the key's lock for it (it is resolved at once).
    for _, _, status, message in writers.failures():
        assert status in (409, 502, 503, 504), (status, message)
    assert_replicas_hold(system, writers.acked)


def test_a_watch_stream_resumes_across_a_master_restart(system):
    """A stream sees every change in index order; `systemctl restart kv-master` ends it, and resuming with the last
    id seen delivers every change after it once, in order (the index and the history live in the decision log)."""
    def put(key):
        deadline = time.monotonic() + 30
        while True:
            status, body = system.http("PUT", f"/kv/{key}", body=b"x")
            if status == 200:
                return body["index"]
            # Right after a restart the master waits for every replica's report before it takes writes.
            assert status in (502, 503) and time.monotonic() < deadline, (status, body)
            time.sleep(0.1)

    stream = system.watch("/watch?prefix=watch/")
    assert stream.status == 200, stream.body()
    stream.wait_ready()
    written = [put(f"watch/{i}") for i in range(20)]
    seen = [e["id"] for e in stream.changes(20)]
    assert seen == written
    old_pid = system.show("kv-master.service", "MainPID")
    system.systemctl("restart", "kv-master")
    wait_restarted(system, "kv-master.service", old_pid)
    assert stream.next_event() is None, "the stream ends with the old master"
    stream.close()
    written += [put(f"watch/{i}") for i in range(20, 40)]
    resumed = system.watch("/watch?prefix=watch/", last_event_id=seen[-1])
    assert resumed.status == 200, resumed.body()
    seen += [e["id"] for e in resumed.changes(20)]
    resumed.close()
    assert seen == written, "every change once, in index order, across the restart"
    REPORT.append(f"watch stream across systemctl restart kv-master: {len(seen)} changes, indexes "
                  f"{seen[0]}..{seen[-1]} without a gap")
    # The walk-through starts the master more often than the unit's start rate limit allows in 10 s (systemd's
    # default StartLimitBurst=5): the tests after this one start it again.
    system.systemctl("reset-failed", "kv-master.service")


def config_version(status_body):
    """The count of accepted configuration files in GET /status (config_epoch; config_generation before)."""
    return status_body.get("config_epoch", status_body.get("config_generation"))


def test_stopped_master_is_started_by_the_next_request(system):
    system.systemctl("stop", "kv-master")
    assert system.is_active("kv-master.service") == "inactive"
    assert system.is_active("kv-master.socket") == "active"
    status, body = system.http("GET", "/kv/greeting")
    assert status == 200 and body["message"] == "hello", body
    wait_until(lambda: system.is_active("kv-master.service") == "active", 10, "kv-master.service to be active")


def test_reload_after_editing_the_config(system):
    generation = config_version(system.http("GET", "/status")[1])
    original = system.read_file("/etc/kv/cluster.yaml")
    assert "  value_bytes_max: 1048576" in original
    system.write_file("/etc/kv/cluster.yaml", original.replace("value_bytes_max: 1048576", "value_bytes_max: 10"))
    system.systemctl("reload", "kv-master")

    def generation_is(n):
        return lambda: config_version(system.http("GET", "/status")[1]) == n
    wait_until(generation_is(generation + 1), 10, "the master to apply the edited cluster.yaml")
    status, body = system.http("PUT", "/kv/big", body=b"x" * 11)
    assert status == 413 and "10 bytes" in body["message"], body
    assert system.http("PUT", "/kv/small", body=b"x" * 10)[0] == 200
    assert system.is_active("kv-master.service") == "active"

    # A broken file is rejected: the previous configuration stays in force, /status and the journal say why.
    system.write_file("/etc/kv/cluster.yaml", original.replace("value_bytes_max: 1048576", "value_bytes_max: ten"))
    system.systemctl("reload", "kv-master")
    wait_until(lambda: "last_reload_error" in system.http("GET", "/status")[1], 10, "the reload to be rejected")
    status, body = system.http("GET", "/status")
    assert config_version(body) == generation + 1 and "cluster.yaml:" in body["last_reload_error"], body
    assert system.http("PUT", "/kv/big", body=b"x" * 11)[0] == 413
    assert "cluster.yaml:" in system.journal("kv-master")

    system.write_file("/etc/kv/cluster.yaml", original)
    system.systemctl("reload", "kv-master")
    wait_until(generation_is(generation + 2), 10, "the master to apply the restored cluster.yaml")
    assert system.http("PUT", "/kv/big", body=b"x" * 11)[0] == 200


def test_a_replica_reloads_with_systemctl_reload_and_keeps_its_status_line_current(system):
    """`systemctl reload kv-replica@r2` (ExecReload: SIGHUP) re-reads the file without a restart; a broken file
    is refused and the replica keeps serving; STATUS= (systemctl status) shows the last reload's answer."""
    pid = system.show("kv-replica@r2.service", "MainPID")
    original = system.read_file("/etc/kv/cluster.yaml")
    system.systemctl("reload", "kv-replica@r2")
    wait_until(lambda: "reload 1 accepted" in system.show("kv-replica@r2.service", "StatusText"), 10,
               "r2's status line to show the reload")
    assert "reload 1 accepted: nothing this replica uses changed" in system.journal("kv-replica@r2")

    system.write_file("/etc/kv/cluster.yaml", original.replace("value_bytes_max: 1048576", "value_bytes_max: ten"))
    system.systemctl("reload", "kv-replica@r2")
    wait_until(lambda: "reload rejected" in system.show("kv-replica@r2.service", "StatusText"), 10,
               "r2's status line to show the refusal")
    assert "cluster.yaml:" in system.show("kv-replica@r2.service", "StatusText")
    system.write_file("/etc/kv/cluster.yaml", original)
    system.systemctl("reload", "kv-replica@r2")
    wait_until(lambda: "reload 2 accepted" in system.show("kv-replica@r2.service", "StatusText"), 10,
               "r2 to take the restored file")
    assert system.show("kv-replica@r2.service", "MainPID") == pid, "a reload must not restart the replica"
    assert system.is_active("kv-replica@r2.service") == "active"
    assert system.http("PUT", "/kv/after-replica-reload", body=b"1")[0] == 200


def test_the_units_open_file_limit_fits_the_configured_connections(system):
    """LimitNOFILE=1024:1048576: each process raises its soft limit to what cluster.yaml admits. The hard limit is
    the unit's, unless the machine booting this systemd has a lower one (a container's), which no unit can pass."""
    import resource
    ceiling = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    for unit, needed in (("kv-replica@r1.service", 1024 + 256), ("kv-master.service", 1024 + 256)):
        pid = system.show(unit, "MainPID")
        limits = system.read_file(f"/proc/{pid}/limits")
        line = next(l for l in limits.splitlines() if l.startswith("Max open files"))
        soft, hard = (int(v) for v in line.split()[3:5])
        assert hard == ceiling and soft >= needed, (unit, line, ceiling)


def test_logs_are_in_the_journal(system):
    journal = system.journal("kv-replica@r1")
    assert "replica r1 ready on 127.0.0.1:" in journal, journal[-3000:]
    assert "replayed" in journal and "kv-replicad[" in journal and " info kv-replicad" in journal
    assert "Started kv-replica@r1.service" in journal
    master = system.journal("kv-master")
    assert "master m1 ready on systemd socket" in master, master[-3000:]


def test_a_configuration_error_is_not_retried(system):
    # kv-replica@r9: no replica r9 in cluster.yaml -> exit 78, and systemd does not restart it.
    result = system.systemctl("start", "kv-replica@r9", check=False)
    assert result.returncode != 0
    assert system.show("kv-replica@r9.service", "ExecMainStatus") == "78"
    # A restart to come would show as SubState auto-restart (waiting out RestartSec); "failed" means systemd
    # has decided not to restart, so there is nothing to wait for.
    assert system.is_active("kv-replica@r9.service") == "failed"
    assert system.show("kv-replica@r9.service", "SubState") == "failed"
    assert system.show("kv-replica@r9.service", "NRestarts") == "0"
    assert "no replica with id 'r9'" in system.journal("kv-replica@r9")
    system.systemctl("reset-failed", "kv-replica@r9")


def test_stop_everything(system):
    system.systemctl("stop", "kv.target")
    for unit in KV_UNITS:
        assert system.is_active(unit) == "inactive", unit
    status, body = system.http("GET", "/kv/greeting")
    assert status == 502 and body["server"] == "nginx", body


def test_uninstall_keeps_data_and_config_then_reinstall(system):
    out = system.run("/run/kvtest/src/scripts/uninstall.sh").stdout
    assert "kept /etc/kv" in out, out
    for path in INSTALLED_PATHS[:6] + ["/etc/nginx/sites-available/kv.conf", "/etc/nginx/sites-enabled/kv.conf",
                                       "/usr/local/share/doc/kv"]:
        assert not system.exists(path), path
    assert system.systemctl("list-unit-files", "kv.target", "kv-*", "--no-legend", check=False).stdout.strip() == ""
    assert system.is_active("nginx.service") == "active"
    assert system.exists("/etc/kv/cluster.yaml")
    assert system.run("sh", "-c", "ls /var/lib/kv/r1/wal-*.log").returncode == 0
    # Installing again picks the kept configuration and data up.
    out = system.run("/run/kvtest/src/scripts/install.sh", env={"KV_BIN_DIR": "/run/kvtest/bin"}).stdout
    assert "kept your /etc/kv/cluster.yaml" in out, out
    system.systemctl("start", "kv.target")
    status, body = system.http("GET", "/kv/greeting")
    assert status == 200 and body["message"] == "hello", body
