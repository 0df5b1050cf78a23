"""docs/OPERATIONS.md "Running on several machines", followed as written on two hosts: two systemds, each booted
in its own network namespace (nsystemd.py), joined by a veth pair whose addresses exist only in those two
namespaces. Host A runs nginx, the master and r1 (`install.sh --role master,replica --id r1`); host B runs r2 and
r3 (`install.sh --role replica --id r2,r3`). Both hold one cluster.yaml and one cluster key, copied from A."""
import subprocess
import uuid

import pytest

from conftest import REPO, _bin_dir
import nsystemd
from nsystemd import wait_until

NET = "10.77.0"

CONFIG = f"""# One file for every host (docs/OPERATIONS.md, Running on several machines).
master:
  id: m1
  listen: /run/kv/master.sock
  decision_log_dir: /var/lib/kv/master
  query_listen: {NET}.1:7100
  worker_threads: 32
replicas:
  - id: r1
    host: {NET}.1
    port: 7001
    listen: {NET}.1:7001
    data_dir: /var/lib/kv/r1
  - id: r2
    host: {NET}.2
    port: 7002
    listen: {NET}.2:7002
    data_dir: /var/lib/kv/r2
  - id: r3
    host: {NET}.2
    port: 7003
    listen: {NET}.2:7003
    data_dir: /var/lib/kv/r3
security:
  cluster_key_file: /etc/kv/cluster.key
  tokens_file: /etc/kv/tokens.yaml
"""


def install(system, *args, check=True):
    return system.run("/run/kvtest/src/scripts/install.sh", *args, env={"KV_BIN_DIR": "/run/kvtest/bin"},
                      check=check)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = nsystemd.unavailable_reason()
    if reason:
        pytest.skip(f"this machine cannot boot systemd in a namespace: {reason}")
    a = nsystemd.NamespacedSystemd(str(tmp_path_factory.mktemp("host-a")), REPO, _bin_dir())
    b = nsystemd.NamespacedSystemd(str(tmp_path_factory.mktemp("host-b")), REPO, _bin_dir())
    suffix = uuid.uuid4().hex[:8]
    ends = (f"kva{suffix}", f"kvb{suffix}")
    try:
        a.boot()
        b.boot()
        # The link between the two hosts: created here, moved into the namespaces, gone with them.
        subprocess.run(["ip", "link", "add", ends[0], "type", "veth", "peer", "name", ends[1]], check=True)
        for system, end, address in ((a, ends[0], f"{NET}.1/24"), (b, ends[1], f"{NET}.2/24")):
            subprocess.run(["ip", "link", "set", end, "netns", str(system.pid1)], check=True)
            system.run("ip", "addr", "add", address, "dev", end)
            system.run("ip", "link", "set", end, "up")
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", ends[0]], capture_output=True)  # only if it never left the host
        a.shutdown()
        b.shutdown()


def status(a):
    return a.http("GET", "/status")[1]


def test_the_hosts_reach_each_other_only_over_the_link(hosts):
    a, b = hosts
    # Nothing listens on B's port 9: a reachable host answers the connect with a reset at once.
    probe = a.run("timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{NET}.2/9", check=False)
    assert "Connection refused" in probe.stderr, probe
    assert f"{NET}.1/24" in a.run("ip", "-brief", "addr").stdout
    assert f"{NET}." not in subprocess.run(["ip", "-brief", "addr"], capture_output=True, text=True).stdout, \
        "the link's addresses must exist only inside the two namespaces"


def test_install_by_role_on_each_host(hosts):
    a, b = hosts
    a.run("mkdir", "-p", "/etc/kv")
    a.write_file("/etc/kv/cluster.yaml", CONFIG)
    out = install(a, "--role", "master,replica", "--id", "r1").stdout
    assert "install: replica r1: binds 10.77.0.1:7001" in out and "kv-replica@r1.service" in out, out
    assert "kv-master.service" in out and "kept your /etc/kv/cluster.yaml" in out, out
    assert a.read_file("/etc/kv/cluster.yaml") == CONFIG, "the cluster's own file stays as copied"

    b.run("mkdir", "-p", "/etc/kv")
    refused = install(b, "--role", "replica", "--id", "r2,r3", check=False)
    assert refused.returncode == 1 and "copy /etc/kv/cluster.yaml from the master's host" in refused.stderr, refused
    b.write_file("/etc/kv/cluster.yaml", CONFIG)
    refused = install(b, "--role", "replica", "--id", "r2,r3", check=False)
    assert refused.returncode == 1 and "/etc/kv/cluster.key is missing: copy it from the master's host" in \
        refused.stderr, refused
    b.write_file("/etc/kv/cluster.key", a.read_file("/etc/kv/cluster.key"))
    b.run("chmod", "600", "/etc/kv/cluster.key")
    out = install(b, "--role", "replica", "--id", "r2,r3").stdout
    assert "enabled kv.target kv-replica@r2.service kv-replica@r3.service" in out, out
    assert not b.exists("/usr/local/bin/kv-master") and not b.exists("/etc/systemd/system/kv-master.service")
    assert not b.exists("/etc/nginx/sites-enabled/kv.conf") and not b.exists("/etc/kv/tokens.yaml")
    wrong = install(b, "--role", "replica", "--id", "r9", check=False)
    assert wrong.returncode == 1 and "no replica with id 'r9'" in wrong.stderr, wrong


def test_start_replicas_first_then_the_master_and_serve_across_hosts(hosts):
    a, b = hosts
    b.systemctl("start", "kv.target")
    for rid, port in (("r2", 7002), ("r3", 7003)):
        assert b.is_active(f"kv-replica@{rid}.service") == "active"
        assert b.show(f"kv-replica@{rid}.service", "StatusText").startswith(f"serving on {NET}.2:{port}")
    a.systemctl("start", "kv.target")
    wait_until(lambda: [r["state"] for r in status(a)["replicas"]] == ["up", "up", "up"], 30,
               "every replica up from the master's host")
    status_code, body = a.http("PUT", "/kv/across", body=b"hosts")
    assert status_code == 200 and [r["server"] for r in body["replicas"]] == ["r1", "r2", "r3"], body
    assert a.http("GET", "/kv/across")[1]["message"] == "hosts"
    verify = a.http("GET", "/status?verify=1")[1]["verify"]
    assert verify["identical"] is True, verify


def test_a_replica_stopped_on_its_own_host_fails_writes_until_it_is_back(hosts):
    a, b = hosts
    b.systemctl("stop", "kv-replica@r2")
    status_code, body = a.http("PUT", "/kv/across", body=b"during")
    assert status_code == 503 and "r2" in body["message"], body
    b.systemctl("start", "kv-replica@r2")
    wait_until(lambda: a.http("PUT", "/kv/across", body=b"after")[0] == 200, 30, "writes to work with r2 back")


def test_a_reload_on_every_host_replicas_first(hosts):
    """The same edit on both hosts, then `systemctl reload 'kv-replica@*'` on each host and the master's reload."""
    a, b = hosts
    edited = CONFIG + "limits:\n  value_bytes_max: 1000\n"
    for system in (a, b):
        system.write_file("/etc/kv/cluster.yaml", edited)
    for system, rids in ((a, ["r1"]), (b, ["r2", "r3"])):
        system.systemctl("reload", "kv-replica@*")
        for rid in rids:
            wait_until(lambda: "reload 1 accepted" in system.show(f"kv-replica@{rid}.service", "StatusText"), 10,
                       f"{rid} to take the edited file")
    a.systemctl("reload", "kv-master")
    wait_until(lambda: a.http("PUT", "/kv/big", body=b"x" * 1001)[0] == 413, 10, "the master to take the limit")
    assert a.http("PUT", "/kv/small", body=b"x" * 1000)[0] == 200


def test_uninstall_on_a_replica_host_keeps_its_data(hosts):
    a, b = hosts
    out = b.run("/run/kvtest/src/scripts/uninstall.sh").stdout
    assert "stopped" in out and "kv-replica@r2.service" in out, out
    assert not b.exists("/usr/local/bin/kv-replicad") and not b.exists("/etc/systemd/system/kv-replica@.service")
    assert b.exists("/var/lib/private/kv/r2/lock") and b.exists("/etc/kv/cluster.yaml")
    assert a.http("PUT", "/kv/across", body=b"gone")[0] == 503, "r2 and r3 are gone with their host's units"
