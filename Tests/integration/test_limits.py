"""Whatever the limits admit must read back, with the bytes that grow most on the way: a value or key at its limit
made of bytes that JSON escapes six-fold (0x01 is valid UTF-8 and becomes \\u0001) or the wire protocol escapes
three-fold (`%`, `;`), through GET (JSON and raw), listing pages, transactions and state transfer."""
import base64
import http.client
import json
import os
import shutil
import urllib.parse

import pytest

from crash_helpers import wait_healthy
from helpers import assert_kv_json, running_cluster

# The limits of the small cluster: small enough to fill a page or a transaction quickly, large enough that one
# entry is far beyond the old fixed 1 MiB state-transfer page in proportion to the wire line.
SMALL = {"key_bytes_max": 64, "value_bytes_max": 4096, "list_limit_max": 1000, "txn_ops_max": 16,
         "txn_bytes_max": 16 * (64 + 4096)}


@pytest.fixture
def small_cluster(tmp_path):
    with running_cluster(tmp_path, limits=SMALL) as c:
        yield c


def url_key(key):
    return "/kv/" + urllib.parse.quote(key, safe="")


def value_of(body):
    """The value bytes of a JSON GET answer (text, or base64 when it is not UTF-8)."""
    if body.get("encoding") == "base64":
        return base64.b64decode(body["message"])
    return body["message"].encode()


def raw_get(cluster, key):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=30)
    try:
        conn.request("GET", url_key(key) + "?raw")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("byte", [b"\x01", b"\"", b"%", b";", b"\n", b"\xff"])
def test_a_value_at_the_limit_reads_back_whatever_its_bytes(cluster, byte):
    value = byte * (1 << 20)  # limits.value_bytes_max by default
    status, body = cluster.http("PUT", "/kv/big", body=value)
    assert status == 200, body
    status, body = cluster.http("GET", "/kv/big")
    assert status == 200, body
    assert_kv_json(status, body)
    assert value_of(body) == value
    status, data = raw_get(cluster, b"big")
    assert status == 200 and data == value
    # One byte more is refused with 413 and changes nothing.
    status, body = cluster.http("PUT", "/kv/big", body=value + byte)
    assert status == 413, body
    status, data = raw_get(cluster, b"big")
    assert status == 200 and data == value


def worst_key(i):
    """A key at key_bytes_max whose bytes the wire escapes (`%`, `;`) and JSON escapes (0x01)."""
    stem = b"k%04d" % i
    filler = b"%;\x01" * SMALL["key_bytes_max"]
    return stem + filler[:SMALL["key_bytes_max"] - len(stem)]


def worst_value(i):
    return (b"\x01" * SMALL["value_bytes_max"])[:-4] + b"%04d" % i


def test_a_full_listing_of_keys_and_values_at_their_limits_reads_back(small_cluster):
    c = small_cluster
    count = SMALL["list_limit_max"]
    expected = {}
    for i in range(count):
        key, value = worst_key(i), worst_value(i)
        assert len(key) == SMALL["key_bytes_max"] and len(value) == SMALL["value_bytes_max"]
        status, body = c.http("PUT", url_key(key), body=value)
        assert status == 200, body
        expected[key] = value
    got = {}
    after = None
    pages = 0
    while True:
        query = {"prefix": "k", "limit": str(count)}
        if after is not None:
            query["after"] = after
        status, body = c.http("GET", "/kv?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
        assert status == 200, body
        assert_kv_json(status, body)
        pages += 1
        for entry in body["kvs"]:
            key = base64.b64decode(entry["key_base64"]) if "key_base64" in entry else entry["key"].encode()
            value = base64.b64decode(entry["value_base64"]) if "value_base64" in entry else entry["value"].encode()
            got[key] = value
        if not body["more"]:
            break
        after = body["next"] if "next" in body else base64.b64decode(body["next_base64"]).decode("latin-1")
        assert pages < 1000
    assert got == expected


def test_a_transaction_at_its_limits_commits_and_reads_back(small_cluster):
    c = small_cluster
    ops = SMALL["txn_ops_max"]
    keys = [worst_key(i) for i in range(ops)]
    values = [worst_value(i) for i in range(ops)]
    b64 = lambda data: base64.b64encode(data).decode()
    puts = [{"op": "put", "key_base64": b64(k), "value_base64": b64(v)} for k, v in zip(keys, values)]
    status, body = c.http("POST", "/txn", body=json.dumps({"compare": [], "success": puts}).encode())
    assert status == 200, body
    gets = [{"op": "get", "key_base64": b64(k)} for k in keys]
    status, body = c.http("POST", "/txn", body=json.dumps({"compare": [], "success": gets}).encode())
    assert status == 200, body
    assert body["succeeded"] is True
    read = {}
    for item in body["responses"]:
        key = base64.b64decode(item["key_base64"]) if "key_base64" in item else item["key"].encode()
        value = base64.b64decode(item["value_base64"]) if "value_base64" in item else item["value"].encode()
        read[key] = value
    assert read == dict(zip(keys, values))


def test_state_transfer_copies_entries_at_their_limits(small_cluster):
    c = small_cluster
    count = 600  # more than one 1 MiB page of raw data would hold at these sizes
    for i in range(count):
        assert c.http("PUT", url_key(worst_key(i)), body=worst_value(i))[0] == 200
    c.stop_replica("r3")
    data = c.replica("r3")["data_dir"]
    data = data if os.path.isabs(data) else os.path.join(os.path.dirname(c.config_path), data)
    shutil.rmtree(data)
    c.start_replica("r3")
    c.wait_cluster_ready(timeout_s=60)  # r3 came back empty: synced, then joined
    wait_healthy(c)
    stats = {rid: c.stat(rid) for rid in c.replica_ids}
    assert stats["r3"]["joined"] is True, stats["r3"]
    assert len({(s["keys"], s["digest"]) for s in stats.values()}) == 1, stats
