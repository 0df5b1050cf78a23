"""Only the cluster's own processes speak the replica protocol (the security issue's attack list, against real
processes): a connection must pass the link handshake over the cluster key before anything it sends is executed,
and each command is allowed only to the roles that need it."""
import os
import signal
import socket

import pytest

from crash_helpers import wait_healthy
from helpers import exchange_until_close, replica_address
from kvcluster import WireClient, role_key, read_key
import kvwire


def raw(host, port, payload, timeout_s=5.0):
    """Sends `payload` on a plain TCP connection, as `nc` would; returns every byte until the server closes."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        return exchange_until_close(sock, payload)


def assert_refused(reply_bytes):
    lines = reply_bytes.decode().splitlines()
    assert len(lines) == 1, f"expected one error line, got {lines}"
    import json
    reply = json.loads(lines[0])
    assert reply["status"] is False and reply["code"] == "unauthorized", reply
    return reply


def verify_identical(cluster):
    status, body = cluster.http("GET", "/status?verify=1")
    assert status == 200 and body["status"], body
    return body


def test_an_unauthenticated_write_is_refused_and_changes_nothing(cluster):
    assert cluster.http("PUT", "/kv/k", body=b"real")[0] == 200
    host, port = replica_address(cluster, "r2")
    reply = assert_refused(raw(host, port, b"123456789012;put;k;intruder\n123456789012;com;;\n"))
    assert "authenticated link" in reply["message"], reply
    for rid in cluster.replica_ids:
        assert cluster.wire(rid, ";get;k;")[0]["message"] == "real", rid
    status, body = cluster.http("GET", "/kv/k")
    assert status == 200 and body["message"] == "real", body
    verify_identical(cluster)


def test_an_unauthenticated_reset_and_join_are_refused(cluster):
    for i in range(5):
        assert cluster.http("PUT", f"/kv/keep{i}", body=b"v")[0] == 200
    host, port = replica_address(cluster, "r3")
    assert_refused(raw(host, port, b";reset;;\n;join;;\n"))
    stat = cluster.stat("r3")
    assert stat["keys"] == 5 and stat["joined"] is True, stat
    for i in range(5):
        assert cluster.wire("r3", f";get;keep{i};")[0]["message"] == "v"
    verify_identical(cluster)


def test_a_wrong_key_is_refused_both_ways(cluster):
    host, port = replica_address(cluster, "r1")
    wrong = os.urandom(32)
    # The client notices first: the replica's proof is not over this key.
    with pytest.raises(kvwire.AuthError, match="does not hold this cluster's key"):
        WireClient(host, port, key=role_key(wrong, "master"), role="master", client_id="intruder")
    # An intruder who answers anyway is refused by the replica.
    sock = socket.create_connection((host, port), timeout=5)
    f = sock.makefile("rwb")
    f.write(b";hello;master:intruder;" + os.urandom(16).hex().encode() + b"\n")
    f.flush()
    assert b'"nonce"' in f.readline()
    f.write(b";auth;master:intruder;" + os.urandom(32).hex().encode() + b"\n;reset;;\n")
    f.flush()
    import json
    reply = json.loads(f.readline())
    assert reply["code"] == "unauthorized" and "wrong proof" in reply["message"], reply
    assert f.readline() == b"", "the connection stays open after a failed handshake"
    sock.close()
    assert cluster.stat("r1")["joined"] is True


def test_a_replayed_handshake_is_refused(cluster):
    host, port = replica_address(cluster, "r1")
    key = cluster.wire_key("master")
    # Record a real handshake's client lines...
    sock = socket.create_connection((host, port), timeout=5)
    recorded = bytearray()

    class Recorder:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            recorded.extend(data)
            return self.file.write(data)

        def flush(self):
            self.file.flush()

        def readline(self):
            return self.file.readline()

    kvwire.handshake(Recorder(sock.makefile("rwb")), key, "master", "m1")
    sock.close()
    # ...and play them back on a new connection: the replica's fresh nonce makes the old proof worthless.
    out = raw(host, port, bytes(recorded) + b"7;put;k;replayed\n")
    lines = out.decode().splitlines()
    assert len(lines) == 2 and '"nonce"' in lines[0], lines
    assert '"unauthorized"' in lines[1] and "wrong proof" in lines[1], lines
    assert cluster.wire("r1", ";get;k;")[0]["code"] == "not_found"


def test_roles_limit_what_a_peer_may_send(cluster):
    assert cluster.http("PUT", "/kv/a", body=b"1")[0] == 200
    host, port = replica_address(cluster, "r1")
    operator = WireClient(host, port, key=cluster.wire_key("operator"), role="operator", client_id="alice",
                          expected_server="r1")
    try:
        get, stat, put, reset = operator.call(";get;a;", ";stat;;", "99;put;a;x", ";reset;;")
        assert get["message"] == "1" and stat["status"] is True, (get, stat)
        for refused in (put, reset):
            assert refused["status"] is False and refused["code"] == "unauthorized", refused
            assert "operator may not send" in refused["message"], refused
    finally:
        operator.close()
    peer = WireClient(host, port, key=cluster.wire_key("replica"), role="replica", client_id="r2")
    try:
        put, = peer.call("99;put;a;x")
        assert put["code"] == "unauthorized", put
    finally:
        peer.close()
    for rid in cluster.replica_ids:
        assert cluster.wire(rid, ";get;a;")[0]["message"] == "1"
    verify_identical(cluster)


def test_the_query_port_admits_only_replicas(cluster):
    host, port = cluster.config["master"]["query_listen"].rsplit(":", 1)
    assert_refused(raw(host, int(port), b"1000000001;qry;;\n"))
    # An operator's key does not open it either.
    with pytest.raises(kvwire.AuthError, match="role operator may not use this port"):
        WireClient(host, int(port), key=cluster.wire_key("operator"), role="operator", client_id="alice")
    replica = WireClient(host, int(port), key=cluster.wire_key("replica"), role="replica", client_id="r1",
                         expected_server="m1")
    try:
        answer, = replica.call("1;qry;;")
        assert answer["server"] == "m1", answer
    finally:
        replica.close()


def test_the_operator_tool_reads_with_the_derived_key(cluster, tmp_path):
    assert cluster.http("PUT", "/kv/tool", body=b"hello")[0] == 200
    import subprocess
    tool = os.path.join(os.path.dirname(kvwire.__file__), "kv-wire")
    operator_key = subprocess.run([tool, "--config", cluster.config_path, "--print-operator-key"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    assert operator_key == role_key(read_key(cluster.key_path), "operator").hex()
    key_file = tmp_path / "operator.key"
    key_file.write_text(operator_key + "\n")
    out = subprocess.run([tool, "--config", cluster.config_path, "--key-file", str(key_file), "r2", ";get;tool",
                          "1;put;tool;x"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert '"message": "hello"' in out[0], out
    assert '"unauthorized"' in out[1], out


# ----- fencing: a stale master is locked out ---------------------------------------------------------------

SEQS_PER_EPOCH = 1_000_000_000


def fence(cluster, rid):
    stat = cluster.stat(rid)
    return stat["fence_epoch"], stat["fence_master"]


def as_master(cluster, rid, client_id, epoch):
    host, port = replica_address(cluster, rid)
    return WireClient(host, port, key=cluster.wire_key("master"), role="master", client_id=client_id,
                      expected_server=rid, epoch=epoch)


def test_a_master_with_an_old_epoch_is_fenced(cluster):
    assert cluster.http("PUT", "/kv/f", body=b"real")[0] == 200
    epoch, master = fence(cluster, "r1")
    assert epoch >= 1 and master.startswith("m1/"), (epoch, master)
    wait_healthy(cluster)  # the put's `com` may still be on its way to a replica
    before = [cluster.stat(rid)["digest"] for rid in cluster.replica_ids]
    for client_id, stale_epoch in (("m-old", epoch - 1), (master, epoch - 1), ("m-other", epoch)):
        stale = as_master(cluster, "r1", client_id, stale_epoch)
        try:
            seq = stale_epoch * SEQS_PER_EPOCH + 777
            replies = stale.call(f"{seq};put;f;stale", f"{seq};com;;", f"{seq + 1};abrt;;", "1;memb;;r1@127.0.0.1:1",
                                 ";reset;;", ";join;;")
            for reply in replies:
                assert reply["status"] is False and reply["code"] == "fenced", (client_id, reply)
                assert reply["seq"] == epoch, reply
            get, = stale.call(";get;f;")
            assert get["message"] == "real", "a fenced master may still read"
        finally:
            stale.close()
    assert [cluster.stat(rid)["digest"] for rid in cluster.replica_ids] == before
    assert fence(cluster, "r1") == (epoch, master), "refused links do not move the fence"
    assert cluster.http("PUT", "/kv/f", body=b"after")[0] == 200
    verify_identical(cluster)


def test_no_message_moves_the_forgotten_seq_watermark(cluster):
    """From the review: `18446744073709551615;abrt;;` and a million aborts made every later prepare 'too old', for
    good. Even the master's own key cannot decide a seq beyond its epoch."""
    assert cluster.http("PUT", "/kv/w", body=b"1")[0] == 200
    epoch, master = fence(cluster, "r2")
    client = as_master(cluster, "r2", master, epoch)
    try:
        future = (epoch + 1) * SEQS_PER_EPOCH + 5
        replies = client.call("18446744073709551615;abrt;;", f"{future};abrt;;", f"{future};com;;", f"{future};qry;;",
                              f"{future};put;w;x", f"{epoch * SEQS_PER_EPOCH - 1};put;w;x")
        for reply in replies:
            assert reply["status"] is False and reply["code"] == "bad_request", reply
            assert "epoch" in reply["message"], reply
    finally:
        client.close()
    assert cluster.stat("r2")["max_seq"] < (epoch + 1) * SEQS_PER_EPOCH, "nothing beyond the epoch was recorded"
    status, body = cluster.http("PUT", "/kv/w", body=b"2")
    assert status == 200, body
    verify_identical(cluster)


def start_second_master(cluster, name):
    """Starts another kv-master on the same replicas with its own decision log and ports (a copy of the master
    run by mistake, or a failover that left the old one running)."""
    import copy
    import yaml
    from kvcluster import free_port
    config = copy.deepcopy(cluster.config)
    config["master"].update(listen=f"127.0.0.1:{free_port()}", decision_log_dir=f"data/{name}",
                            query_listen=f"127.0.0.1:{free_port()}")
    path = os.path.join(os.path.dirname(cluster.config_path), f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    cluster._spawn(name, [os.path.join(cluster.bin_dir, "kv-master"), "--config", path])


def test_a_master_started_later_takes_over_and_the_first_is_fenced(cluster):
    from kvcluster import wait_until
    assert cluster.http("PUT", "/kv/t", body=b"from-a")[0] == 200
    old_epoch, old_master = fence(cluster, "r1")
    start_second_master(cluster, "master-b")

    def taken_over():
        assert cluster.is_running("master-b"), cluster.log("master-b")[-3000:]
        fences = [fence(cluster, rid) for rid in cluster.replica_ids]
        return all(e > old_epoch and m.startswith("m1/") and m != old_master for e, m in fences) and fences
    wait_until(taken_over, 30, "the second master to take over every replica")
    assert "takes over at seq epoch" in cluster.log("master-b")

    # The first master's next write meets the fence and fails; from then on it refuses writes and says why.
    status, body = cluster.http("PUT", "/kv/t", body=b"stale")
    assert status == 503 and body["status"] is False and "fenced" in body["message"], (status, body)
    status, body = cluster.http("PUT", "/kv/t2", body=b"stale")
    assert status == 503 and "this master is fenced" in body["message"], (status, body)
    status, body = cluster.http("GET", "/status")
    assert body["status"] is False and "fenced" in body, body
    assert cluster.http("GET", "/kv/t")[1]["message"] == "from-a"

    # Stopping the newer master does not unfence the old one: it never moves its epoch by itself.
    cluster._signal("master-b", signal.SIGTERM)
    status, body = cluster.http("PUT", "/kv/t", body=b"stale")
    assert status == 503 and "fenced" in body["message"], (status, body)

    # Restarted, it takes over again.
    cluster.stop_master()
    cluster.start_master()
    cluster.wait_cluster_ready()
    assert cluster.http("PUT", "/kv/t", body=b"after")[0] == 200
    assert cluster.http("GET", "/kv/t")[1]["message"] == "after"
    assert cluster.http("GET", "/kv/t2")[0] == 404, "the refused write is nowhere"
    verify_identical(cluster)


def test_the_masters_fastcgi_socket_is_not_world_writable(tmp_path):
    """From the review: outside systemd the master made its unix socket mode 0666, so any local user could talk
    FastCGI to it past nginx (and past its tokens and limits)."""
    import stat
    import kvcluster
    from kvcluster import wait_until
    os.chmod(tmp_path, 0o755)
    c = kvcluster.Cluster.generate(str(tmp_path / "kv"))
    socket_path = str(tmp_path / "kv" / "master.sock")
    config = dict(c.config)
    config["master"] = dict(config["master"], listen=socket_path)
    c.write_config(config)
    try:
        for rid in c.replica_ids:
            c.start_replica(rid)
        c._spawn("master", [os.path.join(c.bin_dir, "kv-master"), "--config", c.config_path])
        wait_until(lambda: os.path.exists(socket_path) and "ready" in c.log("master"), 30, "the master's socket")
        mode = stat.S_IMODE(os.stat(socket_path).st_mode)
        assert mode & 0o002 == 0, f"socket mode {oct(mode)} lets every local user connect"
        assert mode & 0o660 == 0o660, f"socket mode {oct(mode)}: the owner and its group (nginx's) must connect"
    finally:
        c.kill_all()
