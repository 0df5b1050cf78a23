"""The HTTP API through real nginx, master and replicas: happy paths and bad input."""
import base64

from kvcluster import wait_until
from helpers import assert_kv_json, replica_contents


def test_put_get_delete_roundtrip(cluster):
    status, body = cluster.http("PUT", "/kv/greeting", body=b"hello world")
    assert status == 200, body
    assert_kv_json(status, body)
    seq = body["seq"]
    assert seq > 0 and body["server"] == "m1"
    assert [r["server"] for r in body["replicas"]] == ["r1", "r2", "r3"]
    assert all(r["status"] for r in body["replicas"])

    status, body = cluster.http("GET", "/kv/greeting")
    assert status == 200 and body["message"] == "hello world" and body["seq"] == seq
    assert body["server"] in ("r1", "r2", "r3")

    status, body = cluster.http("PUT", "/kv/greeting", body=b"again")
    assert status == 200 and body["seq"] > seq

    status, body = cluster.http("DELETE", "/kv/greeting")
    assert status == 200, body
    assert_kv_json(status, body)
    status, body = cluster.http("GET", "/kv/greeting")
    assert status == 404 and body["message"] == "key not found"
    assert_kv_json(status, body)

    status, body = cluster.http("DELETE", "/kv/greeting")
    assert status == 404, body
    assert "not found" in body["message"]
    assert_kv_json(status, body)


def test_seed_commands_via_post(cluster):
    status, body = cluster.http("POST", "/kv", body=b"put;colour;blue;green")
    assert status == 200, body
    status, body = cluster.http("POST", "/kv", body=b"get;colour")
    assert status == 200 and body["message"] == "blue;green"
    status, body = cluster.http("POST", "/kv", body=b"del;colour")
    assert status == 200, body
    status, body = cluster.http("POST", "/kv", body=b"get;colour")
    assert status == 404
    for bad in (b"", b"get", b"put;k", b"del;k;v", b"fly;k", b"get;", b"get;%zz"):
        status, body = cluster.http("POST", "/kv", body=bad)
        assert status == 400, (bad, status, body)
        assert_kv_json(status, body)


def test_keys_and_values_with_any_bytes(cluster):
    # %2F is the key "a/b"; spaces, semicolons and percent signs are ordinary key bytes.
    status, _ = cluster.http("PUT", "/kv/a%2Fb", body=b"slash")
    assert status == 200
    status, body = cluster.http("GET", "/kv/a%2Fb")
    assert status == 200 and body["message"] == "slash"
    binary = bytes(range(256)) * 4
    status, body = cluster.http("PUT", "/kv/semi%3Bcolon%25%20x", body=binary)
    assert status == 200, body
    status, body = cluster.http("GET", "/kv/semi%3Bcolon%25%20x")
    assert status == 200 and body.get("encoding") == "base64"
    assert base64.b64decode(body["message"]) == binary
    line_breaks = "line1\nline2\r\n;%"
    status, _ = cluster.http("PUT", "/kv/text", body=line_breaks.encode())
    assert status == 200
    for rid in cluster.replica_ids:
        contents = replica_contents(cluster, rid, [b"a/b", b"semi;colon% x", b"text"])
        assert contents[b"a/b"][0] == "slash"
        assert contents[b"text"][0] == line_breaks


def test_bad_input_is_rejected_and_loses_nothing(cluster):
    assert cluster.http("PUT", "/kv/keep", body=b"safe")[0] == 200
    cases = [
        ("GET", "/kv/", None, 400),
        ("PUT", "/kv/", b"x", 400),
        ("PUT", "/kv/" + "k" * 1025, b"x", 413),
        ("PUT", "/kv/big", b"v" * (1048576 + 1), 413),
        ("GET", "/kv/%zz", None, 400),
        ("PATCH", "/kv/keep", b"x", 405),
        ("POST", "/kv/keep", b"x", 405),
        ("GET", "/kv", None, 400),  # a listing needs ?prefix=
        ("PATCH", "/kv", None, 405),
        ("GET", "/nothing-here", None, 404),
    ]
    for method, path, body, expected in cases:
        status, answer = cluster.http(method, path, body=body)
        assert status == expected, (method, path[:40], status, answer)
        assert_kv_json(status, answer)
    status, body = cluster.http("GET", "/kv/keep")
    assert status == 200 and body["message"] == "safe"
    assert cluster.http("GET", "/kv/big")[0] == 404
    # A 200 comes once the decision is durable; `com` may still be on its way: wait for it, not a one-shot stat.
    wait_until(lambda: all(cluster.stat(rid)["keys"] == 1 for rid in cluster.replica_ids), 10, "one key everywhere")


def test_status_lists_every_replica(cluster):
    status, body = cluster.http("GET", "/status")
    assert status == 200 and body["status"] is True
    assert body["server"] == "m1" and body["config"] == cluster.config_path
    assert [r["id"] for r in body["replicas"]] == ["r1", "r2", "r3"]
    for r in body["replicas"]:
        assert r["up"] is True and r["address"].startswith("127.0.0.1:")
        assert r["in_doubt"] == []


def test_malformed_input_is_refused_not_guessed(cluster):
    """Bad input gets a clear 400 (or 412) and changes nothing: a query escape that is not two hex digits, JSON
    numbers outside RFC 8259 (`+1`, `.5`, `1e999`), and a weak ETag in If-Match (RFC 9110 compares If-Match
    strongly, so a weak tag never matches)."""
    assert cluster.http("PUT", "/kv/user1", body=b"x")[0] == 200
    for path in ("/kv?prefix=%+f", "/kv?prefix=user&after=%-1", "/kv/user1?cas=%+1"):
        status, body = cluster.http("GET" if "cas" not in path else "PUT", path, body=b"y")
        assert status == 400 and "percent-encoding" in body["message"], (path, status, body)
        assert_kv_json(status, body)
    for number in (b"+1", b".5", b"1e999", b"01", b"1.", b"-"):
        txn = b'{"compare":[{"key":"user1","target":"version","op":">","value":' + number + b'}],"success":[]}'
        status, body = cluster.http("POST", "/txn", body=txn)
        assert status == 400 and "malformed transaction" in body["message"], (number, status, body)
        assert "reply" not in body["message"], body  # an HTTP body is not a replica's reply
        assert_kv_json(status, body)
    status, body = cluster.http("GET", "/kv/user1")
    version = body["seq"]
    for tag in (f'W/"{version}"', f"W/{version}"):
        status, body = cluster.http("PUT", "/kv/user1", body=b"z", headers={"If-Match": tag})
        assert status == 412, (tag, status, body)
        assert_kv_json(status, body)
    status, body = cluster.http("GET", "/kv/user1")
    assert status == 200 and body["message"] == "x" and body["seq"] == version
    status, body = cluster.http("PUT", "/kv/user1", body=b"z", headers={"If-Match": f'"{version}"'})
    assert status == 200, body
