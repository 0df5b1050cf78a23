"""Leases (issue 13): grant, keepalive, inspect, attach, revoke and expiry, each removal one transaction on every
replica; durability across a master restart (full TTL again); keys written without their lease are detached;
the reserved key space stays hidden; limits. Real nginx, master and replicas."""
import json
import time
import urllib.parse

from helpers import running_cluster
from kvcluster import wait_until
from kvsse import EventStream


def grant(cluster, ttl_s, **extra):
    status, body = cluster.http("POST", "/lease", body=json.dumps({"ttl_s": ttl_s, **extra}))
    assert status == 200, body
    assert body["ttl_s"] == ttl_s and body["index"] > 0
    return body["id"]


def attach(cluster, key, value, lease, expect=200, headers=None):
    status, body = cluster.http("PUT", f"/kv/{key}?lease={lease}", body=value.encode(), headers=headers)
    assert status == expect, body
    return body


def value_of(cluster, key):
    status, body = cluster.http("GET", f"/kv/{key}")
    return body["message"] if status == 200 else None


def leases_loaded(cluster):
    wait_until(lambda: cluster.http("GET", "/status")[1]["leases"]["loaded"], 30, "the master to load the leases")


def test_grant_keepalive_inspect_and_bad_input(cluster):
    leases_loaded(cluster)
    lease = grant(cluster, 30)
    assert 1 <= lease < 2 ** 53
    attach(cluster, "g/a", "1", lease)
    attach(cluster, "g/b", "2", lease)
    status, info = cluster.http("GET", f"/lease/{lease}")
    assert status == 200 and info["ttl_s"] == 30 and 25_000 < info["remaining_ms"] <= 30_000, info
    assert [k["key"] for k in info["keys"]] == ["g/a", "g/b"]
    status, alive = cluster.http("POST", f"/lease/{lease}/keepalive")
    assert status == 200 and alive["ttl_s"] == 30, alive
    status, listed = cluster.http("GET", "/lease")
    assert status == 200 and {"id": lease, "keys": 2} in [{"id": x["id"], "keys": x["keys"]} for x in listed["leases"]]
    # The attached key reads like any other.
    assert value_of(cluster, "g/a") == "1"
    # A chosen id, once; twice is a conflict.
    assert grant(cluster, 10, id=4242) == 4242
    status, body = cluster.http("POST", "/lease", body=json.dumps({"ttl_s": 10, "id": 4242}))
    assert status == 409 and "exists" in body["message"], body
    for bad in ('{"ttl_s":0}', '{"ttl_s":604801}', '{"ttl_s":"10"}', '{"ttl_s":1.5}', "ttl=10", '{"ttl_s":5,"id":0}'):
        status, body = cluster.http("POST", "/lease", body=bad)
        assert status == 400 and "ttl_s" in body["message"] or "id" in body["message"], (bad, body)
    assert cluster.http("POST", "/lease/999999/keepalive")[0] == 404
    assert cluster.http("GET", "/lease/999999")[0] == 404
    assert cluster.http("DELETE", "/lease/999999")[0] == 404
    assert cluster.http("GET", "/lease/abc")[0] == 400
    assert cluster.http("GET", f"/lease/{lease}/nope")[0] == 404
    # Attaching to a lease that does not exist writes nothing.
    body = attach(cluster, "g/none", "x", 999999, expect=404)
    assert "nothing was written" in body["message"]
    assert value_of(cluster, "g/none") is None
    assert cluster.http("DELETE", f"/kv/g/a?lease={lease}")[0] == 400
    assert cluster.http("PUT", "/kv/g/c?lease=x", body=b"1")[0] == 400


def test_expiry_deletes_every_key_in_one_transaction_and_watchers_see_expire(cluster):
    leases_loaded(cluster)
    stream = EventStream(cluster.http_port, "/watch?prefix=e/")
    stream.wait_ready()
    lease = grant(cluster, 2)
    granted = time.monotonic()
    for name in ("a", "b", "c"):
        attach(cluster, f"e/{name}", name, lease)
    status, plain = cluster.http("PUT", "/kv/e/plain", body=b"stays")
    assert status == 200
    puts = stream.changes(4)
    assert [(e["event"], e["data"]["key"], e["data"]["lease"]) for e in puts] == [
        ("put", "e/a", lease), ("put", "e/b", lease), ("put", "e/c", lease), ("put", "e/plain", 0)]
    expired = stream.changes(3)
    gone_after = time.monotonic() - granted
    assert 1.9 <= gone_after <= 3.0, f"expired {gone_after:.2f} s after a 2 s grant"
    assert [e["event"] for e in expired] == ["expire"] * 3
    assert sorted(e["data"]["key"] for e in expired) == ["e/a", "e/b", "e/c"]
    assert len({e["data"]["index"] for e in expired}) == 1, "one transaction deleted them all"
    for name in ("a", "b", "c"):
        assert value_of(cluster, f"e/{name}") is None
    assert value_of(cluster, "e/plain") == "stays"
    assert cluster.http("GET", f"/lease/{lease}")[0] == 404
    assert cluster.http("POST", f"/lease/{lease}/keepalive")[0] == 404
    stream.close()
    # Every replica holds the same state afterwards (the reserved keys included).
    status, report = cluster.http("GET", "/status?verify=1")
    assert status == 200 and report["verify"]["identical"], report


def test_keepalive_holds_a_lease_past_its_ttl(cluster):
    leases_loaded(cluster)
    lease = grant(cluster, 1)
    attach(cluster, "k/held", "v", lease)
    until = time.monotonic() + 3
    while time.monotonic() < until:
        assert cluster.http("POST", f"/lease/{lease}/keepalive")[0] == 200
        time.sleep(0.3)
    assert value_of(cluster, "k/held") == "v"
    wait_until(lambda: value_of(cluster, "k/held") is None, 5, "the key to expire once keepalives stop")


def test_revoke_deletes_the_keys_and_watchers_see_delete(cluster):
    leases_loaded(cluster)
    lease = grant(cluster, 60)
    attach(cluster, "r/a", "1", lease)
    attach(cluster, "r/b", "2", lease)
    stream = EventStream(cluster.http_port, "/watch?prefix=r/&from=0")
    assert [e["event"] for e in stream.changes(2)] == ["put", "put"]
    status, body = cluster.http("DELETE", f"/lease/{lease}")
    assert status == 200 and body["keys_deleted"] == 2 and body["index"] > 0, body
    deleted = stream.changes(2)
    assert [e["event"] for e in deleted] == ["delete", "delete"]
    assert {e["id"] for e in deleted} == {body["index"], None} or deleted[-1]["id"] == body["index"]
    assert value_of(cluster, "r/a") is None and value_of(cluster, "r/b") is None
    assert cluster.http("DELETE", f"/lease/{lease}")[0] == 404
    stream.close()


def test_a_key_written_without_its_lease_is_detached(cluster):
    leases_loaded(cluster)
    lease = grant(cluster, 60)
    attach(cluster, "d/rewritten", "leased", lease)
    attach(cluster, "d/deleted", "leased", lease)
    attach(cluster, "d/kept", "leased", lease)
    assert cluster.http("PUT", "/kv/d/rewritten", body=b"plain")[0] == 200
    assert cluster.http("DELETE", "/kv/d/deleted")[0] == 200
    status, info = cluster.http("GET", f"/lease/{lease}")
    assert [k["key"] for k in info["keys"]] == ["d/kept"], info
    # Recreated after its delete, without the lease: not the lease's either.
    assert cluster.http("PUT", "/kv/d/deleted", body=b"new")[0] == 200
    status, body = cluster.http("DELETE", f"/lease/{lease}")
    assert status == 200 and body["keys_deleted"] == 1, body
    assert value_of(cluster, "d/rewritten") == "plain"
    assert value_of(cluster, "d/deleted") == "new"
    assert value_of(cluster, "d/kept") is None
    # Moving a key to another lease takes it from the first.
    first, second = grant(cluster, 60), grant(cluster, 60)
    attach(cluster, "d/moved", "1", first)
    attach(cluster, "d/moved", "2", second)
    assert cluster.http("DELETE", f"/lease/{first}")[1]["keys_deleted"] == 0
    assert value_of(cluster, "d/moved") == "2"
    assert cluster.http("DELETE", f"/lease/{second}")[1]["keys_deleted"] == 1
    assert value_of(cluster, "d/moved") is None
    assert cluster.http("GET", "/status")[1]["leases"]["keys"] == 0


def test_leases_survive_a_master_restart_with_their_full_ttl(tmp_path):
    with running_cluster(tmp_path) as cluster:
        leases_loaded(cluster)
        lease = grant(cluster, 3)
        attach(cluster, "m/held", "v", lease)
        attach(cluster, "m/detached", "leased", lease)
        assert cluster.http("PUT", "/kv/m/detached", body=b"plain")[0] == 200
        cluster.kill_master()
        time.sleep(4)  # longer than the TTL, with no master to expire anything: the point of the test
        cluster.start_master()
        cluster.wait_cluster_ready()
        leases_loaded(cluster)
        restarted = time.monotonic()
        assert value_of(cluster, "m/held") == "v", "a lease does not expire while the master is down"
        status, info = cluster.http("GET", f"/lease/{lease}")
        assert status == 200 and info["remaining_ms"] > 2000, info
        wait_until(lambda: value_of(cluster, "m/held") is None, 10, "the lease to expire after its TTL")
        # Not before its full TTL from the restart (the lateness of an expiry is bench/leases.py's figure).
        expired_after = time.monotonic() - restarted
        print(f"expired {expired_after:.2f} s after the restarted master loaded its leases (TTL 3 s)")
        assert expired_after >= 2.5, expired_after
        # The key rewritten without the lease before the restart stays (its marker alone went).
        assert value_of(cluster, "m/detached") == "plain"
        status, report = cluster.http("GET", "/status?verify=1")
        assert report["verify"]["identical"] and report["leases"]["count"] == 0, report


def test_reserved_keys_stay_hidden(cluster):
    leases_loaded(cluster)
    lease = grant(cluster, 60)
    stream = EventStream(cluster.http_port, "/watch?prefix=")
    stream.wait_ready()
    attach(cluster, "h/a", "1", lease)
    assert cluster.http("PUT", "/kv/h/b", body=b"2")[0] == 200
    keys = [e["data"]["key"] for e in stream.changes(2)]
    assert keys == ["h/a", "h/b"], keys
    stream.close()
    status, page = cluster.http("GET", "/kv?prefix=&limit=1000")
    assert status == 200 and [kv["key"] for kv in page["kvs"]] == ["h/a", "h/b"] and not page["more"], page
    # Paged, one key a page, the listing still ends at the client's keys.
    status, page = cluster.http("GET", "/kv?prefix=&limit=1&after=h/a")
    assert [kv["key"] for kv in page["kvs"]] == ["h/b"] and not page["more"], page
    reserved = urllib.parse.quote(b"\xffkv/lease/" + str(lease).encode())
    for method in ("GET", "PUT", "DELETE"):
        status, body = cluster.http(method, f"/kv/{reserved}", body=b"x" if method == "PUT" else None)
        assert status == 400 and "reserved" in body["message"], body
    status, body = cluster.http("POST", "/txn", body=json.dumps({
        "compare": [], "success": [{"op": "del", "key_base64": "/2t2L2xlYXNlLzE="}]}))
    assert status == 400 and "reserved" in body["message"], body
    reserved_prefix = urllib.parse.quote(b"\xffkv/")
    assert cluster.http("GET", f"/watch?prefix={reserved_prefix}")[0] == 400


def test_a_key_and_value_at_their_limits_can_be_attached(tmp_path):
    limits = {"key_bytes_max": 256, "value_bytes_max": 65536, "txn_ops_max": 11}
    with running_cluster(tmp_path, limits=limits) as cluster:
        leases_loaded(cluster)
        lease = grant(cluster, 60)
        key = "L" * 256
        status, body = cluster.http("PUT", f"/kv/{key}?lease={lease}", body=b"v" * 65536)
        assert status == 200, body
        status, body = cluster.http("GET", f"/kv/{key}?raw")
        assert status == 200 and body == {"raw": "v" * 65536}
        # txn_ops_max 11 fits a removal of (11 - 2) / 3 = 3 keys.
        attach(cluster, "two", "2", lease)
        attach(cluster, "three", "3", lease)
        body = attach(cluster, "four", "4", lease, expect=409)
        assert "txn_ops_max" in body["message"] and value_of(cluster, "four") is None
        status, body = cluster.http("DELETE", f"/lease/{lease}")
        assert status == 200 and body["keys_deleted"] == 3, body
        assert cluster.http("GET", f"/kv/{key}")[0] == 404


def test_create_if_absent_with_a_lease(cluster):
    leases_loaded(cluster)
    first, second = grant(cluster, 60), grant(cluster, 60)
    attach(cluster, "c/lock", "first", first, headers={"If-Match": "0"})
    body = attach(cluster, "c/lock", "second", second, expect=412, headers={"If-Match": "0"})
    assert body["current_version"] > 0 and "nothing was written" in body["message"]
    assert value_of(cluster, "c/lock") == "first"
    assert cluster.http("DELETE", f"/lease/{first}")[1]["keys_deleted"] == 1
    attach(cluster, "c/lock", "second", second, headers={"If-Match": "0"})
    assert value_of(cluster, "c/lock") == "second"


def test_the_lease_keeper_keeps_no_read_connection_open(cluster):
    """The keeper lists the leases at start on its own thread's read connection; kept open, it outlived a reload
    that removed its replica (test_read_connections_to_a_removed_replica_are_closed failed in CI, 1 run in 3)."""
    from test_membership import master_connections_to
    leases_loaded(cluster)
    cluster.wait_cluster_ready()
    counts = {rid: master_connections_to(cluster, int(cluster.replica(rid)["port"])) for rid in cluster.replica_ids}
    assert counts == {rid: 1 for rid in cluster.replica_ids}, f"beyond the one link each: {counts}"
