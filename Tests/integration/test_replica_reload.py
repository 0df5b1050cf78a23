"""A replica re-reads cluster.yaml on SIGHUP (`systemctl reload kv-replica@ID` sends it): it validates the whole
file, applies what can change live (peers' addresses, the master's query port, time-outs, limits), says what
needs a restart, and keeps the old configuration on any error, as the master does."""
import copy
import http.client
import os
import signal

from crash_helpers import exit_code, read_replica, start_cluster, wait_healthy
from kvcluster import free_port, wait_until


def test_sighup_applies_new_peer_addresses_and_time_outs_and_a_moved_peer_settles_a_blocked_transaction(
        unstarted_cluster):
    """The master dies after delivering `com` to r1 only (master-mid-commit-send), and stays down. The coordinator's
    time limits are long, so r3 leaves its in-doubt transaction to the coordinator. r1, the only one who knows
    the outcome, is stopped and moved to a new port. A reload that shortens the time limits makes r3 ask: the
    master is down, r1 is gone from where the prepare recorded it, r2 is in doubt too, so the seq is blocked. The
    next reload tells r3 where r1 is now, and r3 learns the commit from it with no master at all."""
    c = unstarted_cluster
    config = copy.deepcopy(c.config)
    config["timeouts"] = {"prepare_timeout_ms": 60000, "commit_timeout_ms": 60000}
    c.write_config(config)
    start_cluster(c, env_for={"master": {"KV_FAILPOINTS": "master-mid-commit-send"}})
    try:
        status, _ = c.http("PUT", "/kv/moved", body=b"committed-on-r1", timeout_s=10)
    except OSError:
        status = None
    assert status in (None, 502), status
    wait_until(lambda: not c.is_running("master"), 10, "the master to exit at the failpoint")
    assert exit_code(c, "master") == 99
    assert c.stat("r1")["in_doubt"] == [], "r1 got the commit"
    in_doubt = c.stat("r3")["in_doubt"]
    assert len(in_doubt) == 1 and not in_doubt[0]["blocked"], in_doubt
    seq = in_doubt[0]["seq"]

    c.stop_replica("r1")
    config["timeouts"] = {"prepare_timeout_ms": 300, "commit_timeout_ms": 300}
    c.write_config(config)
    line = c.reload_replica("r3")
    assert "reload 1 accepted" in line and "timeouts.prepare_timeout_ms 60000 → 300" in line, line
    wait_until(lambda: c.stat("r3")["in_doubt"][0]["blocked"], 10, "r3 to report the seq blocked")

    config["replicas"][0]["port"] = free_port()
    c.write_config(config)
    c.start_replica("r1")
    line = c.reload_replica("r3")
    assert f"peer r1 moved to 127.0.0.1:{config['replicas'][0]['port']}" in line, line
    wait_until(lambda: c.stat("r3")["in_doubt"] == [], 10, "r3 to learn the outcome from r1 at its new address")
    assert f"in-doubt {seq}: learned commit" in c.log("r3")
    assert read_replica(c, "r3", [b"moved"])[b"moved"][0] == "committed-on-r1"
    assert c.is_running("r3"), "SIGHUP must never stop a replica"

    # r2 was not reloaded: it still asks r1 where the prepare put it. Its own reload settles it too.
    assert "moved" in c.reload_replica("r2")
    wait_until(lambda: c.stat("r2")["in_doubt"] == [], 10, "r2 to learn the outcome after its reload")

    c.start_master()
    wait_healthy(c)
    status, body = c.http("GET", "/kv/moved")
    assert status == 200 and body["message"] == "committed-on-r1", body


def test_a_bad_edit_leaves_the_old_configuration_in_force_on_every_process(cluster):
    """A broken file reloaded everywhere: the master answers 400 with FILE:LINE:COL, each replica logs the same
    refusal and keeps serving with its old limits; a file without the replica is refused by that replica; then
    the good file is taken by all."""
    good = copy.deepcopy(cluster.config)
    text = open(cluster.config_path).read()
    cluster.write_config(text=text.replace("replicas:", "replicas:\n  - id: [r9", 1))
    status, body = cluster.reload_master()
    assert status == 400 and "cluster.yaml:" in body["message"], body
    for n, rid in enumerate(cluster.replica_ids):
        line = cluster.reload_replica(rid)
        assert "reload rejected, the old configuration stays in force: config: " in line and "cluster.yaml:" in line, line
        assert cluster.is_running(rid)
    assert cluster.http("PUT", "/kv/after-bad-edit", body=b"x" * 2000)[0] == 200

    without = copy.deepcopy(good)
    without["replicas"] = [r for r in without["replicas"] if r["id"] != "r3"]
    cluster.write_config(without)
    line = cluster.reload_replica("r3")
    assert "no replica with id 'r3'" in line and "keeps its old configuration" in line, line

    limited = copy.deepcopy(good)
    limited["limits"] = {"value_bytes_max": 1000}
    cluster.write_config(limited)
    for rid in cluster.replica_ids:
        line = cluster.reload_replica(rid)
        assert "accepted" in line and "limits.value_bytes_max 1048576 → 1000" in line, line
    assert cluster.reload_master()[0] == 200
    status, body = cluster.http("PUT", "/kv/after-good-edit", body=b"x" * 1001)
    assert status == 413 and "1000 bytes" in body["message"], body


def test_a_replica_reload_reports_what_needs_a_restart(cluster):
    config = copy.deepcopy(cluster.config)
    config["replicas"][1]["data_dir"] = config["replicas"][1]["data_dir"] + "-elsewhere"
    cluster.write_config(config)
    line = cluster.reload_replica("r2")
    assert "accepted" in line and "needs a restart: replicas[r2].data_dir" in line, line
    # The master refuses the file while r2 still serves its old directory (see test_membership_checks.py).
    assert cluster.stat("r2")["data_dir"].endswith("/r2"), cluster.stat("r2")


def test_raising_value_bytes_max_by_reload_lets_a_value_at_the_new_limit_through_nginx(cluster):
    """The documented order for a larger value limit: edit cluster.yaml, reload the replicas, reload the master
    (which refuses while a replica still takes only shorter lines, and names nginx's setting), raise nginx's
    client_max_body_size and reload nginx. Then a value of exactly the new limit is written and reads back
    byte for byte, over connections opened before any reload, and one byte more is refused by the master."""
    new_limit = 4 << 20
    big = bytes((n * 7 + 3) % 251 for n in range(new_limit))
    assert cluster.http("PUT", "/kv/warm", body=b"before")[0] == 200  # the master's links are open by now
    config = copy.deepcopy(cluster.config)
    config["limits"] = {"value_bytes_max": new_limit}
    cluster.write_config(config)

    status, body = cluster.reload_master()
    assert status == 400 and "reload the replicas first" in body["message"], body
    for rid in cluster.replica_ids:
        assert f"limits.value_bytes_max 1048576 → {new_limit}" in cluster.reload_replica(rid)
    status, body = cluster.reload_master()
    assert status == 200, body
    assert "client_max_body_size to at least 4100k" in body["message"], body

    status, body = cluster.http("PUT", "/kv/big", body=big, timeout_s=30)
    assert status == 413 and body["server"] == "nginx", body  # nginx's 2m, as the reload answer warned

    snippet = os.path.join(cluster.run_dir, "nginx", "kv-locations.conf")
    text = open(snippet).read()
    assert "client_max_body_size 2m;" in text
    with open(snippet, "w") as f:
        f.write(text.replace("client_max_body_size 2m;", "client_max_body_size 4100k;"))
    os.kill(cluster.procs["nginx"].pid, signal.SIGHUP)

    def through():
        # nginx's old workers may take the request until they exit; its 413 wrote nothing, so retrying is safe.
        status, body = cluster.http("PUT", "/kv/big", body=big, timeout_s=30)
        return (status, body) if body.get("server") != "nginx" else None
    status, body = wait_until(through, 20, "nginx's new workers to pass the larger body")
    assert status == 200, body
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=30)
    conn.request("GET", "/kv/big?raw")
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200 and data == big, (response.status, len(data))
    status, body = cluster.http("PUT", "/kv/bigger", body=big + b"x", timeout_s=30)
    assert status == 413 and body["server"] == "m1" and f"{new_limit} bytes" in body["message"], body


def test_cluster_sh_reload_reloads_the_replicas_then_the_master(cluster):
    """`scripts/cluster.sh reload` (its kvcluster.py command), as OPERATIONS gives it for the dev cluster."""
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "kvcluster.py")

    def reload():
        return subprocess.run([sys.executable, script, "reload", "--config", cluster.config_path, "--run-dir",
                               cluster.run_dir, "--http-port", str(cluster.http_port)],
                              capture_output=True, text=True, timeout=60, env=dict(os.environ))
    config = copy.deepcopy(cluster.config)
    config["limits"] = {"value_bytes_max": 500}
    cluster.write_config(config)
    run = reload()
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["r1", "r2", "r3", "master"], lines
    assert all("reload 1 accepted" in line and "1048576 → 500" in line for line in lines[:3]), lines
    assert lines[3].startswith("master: 200 configuration epoch 2 in force"), lines
    assert cluster.http("PUT", "/kv/k", body=b"x" * 501)[0] == 413
    # A file the processes refuse: each says so, and the command fails.
    cluster.write_config(text=open(cluster.config_path).read().replace("value_bytes_max: 500", "value_bytes_max: -1"))
    run = reload()
    assert run.returncode == 1 and run.stdout.count("reload rejected") == 4 and "master: 400 reload rejected" in run.stdout, run.stdout
    # One that is not even YAML: nothing is sent.
    cluster.write_config(text="replicas: [\n")
    run = reload()
    assert run.returncode == 1 and "does not parse" in run.stderr and "nothing was reloaded" in run.stderr, run.stderr
