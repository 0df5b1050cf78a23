"""Versions, compare-and-swap, multi-key transactions and prefix listing, under concurrency."""
import json
import random
import threading
import time

from crash_helpers import wait_healthy
from helpers import assert_kv_json, run_threads
from kvcluster import wait_until


def get(cluster, key):
    status, body = cluster.http("GET", "/kv/" + key)
    return status, body


def test_versions_etag_and_raw_values(cluster):
    status, body = cluster.http("PUT", "/kv/v", body=b"one")
    first = body["seq"]
    cluster.http("PUT", "/kv/v", body=b"two")
    status, body = get(cluster, "v")
    assert status == 200 and body["created"] == first and body["seq"] > first
    binary = bytes(range(256))
    assert cluster.http("PUT", "/kv/bin", body=binary)[0] == 200
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=10)
    conn.request("GET", "/kv/bin?raw")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == binary
    assert resp.getheader("Content-Type") == "application/octet-stream"
    etag = resp.getheader("ETag")
    conn.request("GET", "/kv/bin", headers={"Accept": "application/octet-stream"})
    resp = conn.getresponse()
    assert resp.read() == binary and resp.getheader("ETag") == etag
    conn.close()


def test_cas_rejects_stale_versions_with_412(cluster):
    status, body = cluster.http("PUT", "/kv/x?cas=0", body=b"a")
    assert status == 200, body
    version = body["seq"]
    status, body = cluster.http("PUT", "/kv/x?cas=0", body=b"b")
    assert status == 412 and body["current_version"] == version, body
    assert_kv_json(status, body)
    status, body = cluster.http("PUT", "/kv/x", body=b"c", headers={"If-Match": f'"{version}"'})
    assert status == 200, body
    status, body = cluster.http("DELETE", "/kv/x", headers={"If-Match": str(version)})
    assert status == 412, body
    assert get(cluster, "x")[1]["message"] == "c"
    assert cluster.http("PUT", "/kv/x?cas=abc", body=b"d")[0] == 400


def test_cas_counter_with_16_clients(cluster):
    assert cluster.http("PUT", "/kv/counter", body=b"0")[0] == 200
    successes = []
    lock = threading.Lock()

    def worker(index, stop, max_ops):
        for _ in range(max_ops):
            if stop.is_set():
                return
            status, body = get(cluster, "counter")
            assert status == 200, body
            value, version = int(body["message"]), body["seq"]
            status, body = cluster.http("PUT", "/kv/counter", body=str(value + 1).encode(),
                                        headers={"If-Match": str(version)})
            assert status in (200, 409, 412), (status, body)
            if status == 200:
                with lock:
                    successes.append(value + 1)

    run_threads(16, worker, duration_s=4, max_ops=400)
    status, body = get(cluster, "counter")
    print(f"{len(successes)} successful CAS increments by 16 clients")
    assert len(successes) > 16
    assert int(body["message"]) == len(successes)
    assert sorted(successes) == list(range(1, len(successes) + 1)), "two CAS writes saw the same version"
    wait_healthy(cluster)  # a 200 comes before the replicas' acks: compare once every `com` is delivered
    digests = {cluster.stat(r)["digest"] for r in cluster.replica_ids}
    assert len(digests) == 1


def txn(cluster, spec):
    return cluster.http("POST", "/txn", body=json.dumps(spec).encode())


def test_transfers_keep_the_total(cluster):
    accounts = [f"acct{i:02d}" for i in range(20)]
    for a in accounts:
        assert cluster.http("PUT", "/kv/" + a, body=b"100")[0] == 200
    snapshots = []
    transfers = []
    lock = threading.Lock()

    def worker(index, stop, max_ops):
        rng = random.Random(index)
        for _ in range(max_ops):
            if stop.is_set():
                return
            if index == 0:  # a reader: one transaction reading all 20 accounts is an atomic snapshot
                status, body = txn(cluster, {"success": [{"op": "get", "key": a} for a in accounts]})
                if status == 200:
                    with lock:
                        snapshots.append(sum(int(r["value"]) for r in body["responses"]))
                continue
            src, dst = rng.sample(accounts, 2)
            got = {}
            for key in (src, dst):
                status, body = get(cluster, key)
                if status != 200:
                    break
                got[key] = (int(body["message"]), body["seq"])
            if len(got) < 2:
                continue
            amount = rng.randint(1, 10)
            spec = {"compare": [{"key": src, "target": "version", "op": "=", "value": got[src][1]},
                                {"key": dst, "target": "version", "op": "=", "value": got[dst][1]}],
                    "success": [{"op": "put", "key": src, "value": str(got[src][0] - amount)},
                                {"op": "put", "key": dst, "value": str(got[dst][0] + amount)}]}
            status, body = txn(cluster, spec)
            assert status in (200, 409, 503), body
            if status == 200 and body["succeeded"]:
                with lock:
                    transfers.append(amount)

    run_threads(6, worker, duration_s=5, max_ops=300)
    print(f"{len(transfers)} transfers, {len(snapshots)} snapshot reads")
    assert transfers and snapshots
    assert set(snapshots) == {2000}, set(snapshots)
    for rid in cluster.replica_ids:
        replies = cluster.wire(rid, *[f";get;{a};" for a in accounts])
        assert sum(int(r["message"]) for r in replies) == 2000, rid
    wait_until(lambda: len({cluster.stat(r)["digest"] for r in cluster.replica_ids}) == 1, 10,
               "the last commits delivered everywhere")


def test_txn_limits_and_errors(cluster):
    status, body = txn(cluster, {"success": [{"op": "put", "key": f"k{i}", "value": "v"} for i in range(200)]})
    assert status == 413 and "txn_ops_max" in body["message"], body
    status, body = cluster.http("POST", "/txn", body=b"{not json")
    assert status == 400 and "malformed transaction" in body["message"]
    status, body = txn(cluster, {"success": [{"op": "put", "key": "a", "value": "1"}, {"op": "del", "key": "a"}]})
    assert status == 400 and "only once" in body["message"], body
    status, body = txn(cluster, {"compare": [{"key": "zz", "target": "exists", "value": False}],
                                 "success": [{"op": "put", "key": "zz", "value": "1"}]})
    assert status == 200 and body["succeeded"] is True
    status, body = txn(cluster, {"compare": [{"key": "zz", "target": "exists", "value": False}],
                                 "success": [{"op": "put", "key": "zz", "value": "2"}],
                                 "failure": [{"op": "get", "key": "zz"}]})
    assert status == 200 and body["succeeded"] is False and body["responses"][0]["value"] == "1"


def test_listing_pages_in_order_while_writes_go_on(cluster):
    """Pages of a prefix while a writer rewrites keys inside it (and outside): every listed value was written,
    none is older than a write to its key acknowledged before the page was asked for (a listing waits for a
    key's undecided write rather than skip it or show what it replaces), and the keys are exactly the prefix's."""
    expected = sorted(f"list/{i:04d}" for i in range(250))
    for key in expected:
        assert cluster.http("PUT", "/kv/" + key.replace("/", "%2F"), body=key.encode())[0] == 200
    churned = expected[::10]
    lock = threading.Lock()
    written = {key: [key] for key in churned}  # per key, every value in the order written (one writer)
    acked = {key: (0, 0.0) for key in churned}  # per key, (index into written, when acknowledged)
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set() and n < 2000:
            key = churned[n % len(churned)]
            value = f"{key}#{n}"
            with lock:
                written[key].append(value)
            if cluster.http("PUT", "/kv/" + key.replace("/", "%2F"), body=value.encode())[0] == 200:
                with lock:
                    acked[key] = (len(written[key]) - 1, time.monotonic())
            cluster.http("PUT", f"/kv/other{n % 50}", body=b"x")
            cluster.http("PUT", f"/kv/list%2Fextra{n % 5}", body=b"y")
            n += 1
    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    try:
        # Every churned key rewritten once before the first page: then each must be listed with a rewrite.
        wait_until(lambda: all(index > 0 for index, _ in dict(acked).values()), 30, "a rewrite of every churned key")
        got, after, pages, rewritten_seen = [], "", 0, 0
        while True:
            with lock:
                floor = {key: index for key, (index, _) in acked.items()}
            status, body = cluster.http("GET", f"/kv?prefix=list/0&limit=40&after={after}")
            assert status == 200, body
            pages += 1
            got += [kv["key"] for kv in body["kvs"]]
            for kv in body["kvs"]:
                key, value = kv["key"], kv["value"]
                if key not in written:
                    assert value == key, kv
                    continue
                with lock:
                    history = list(written[key])
                assert value in history, f"{key} listed with {value!r}, never written"
                assert history.index(value) >= floor[key], (f"{key} listed with {value!r}, older than "
                                                            f"{history[floor[key]]!r} acknowledged before the page")
                rewritten_seen += value != key
            if not body["more"]:
                break
            after = body["next"]
        assert got == expected and pages == 7, (pages, got[:5])
        assert rewritten_seen == len(churned), (rewritten_seen, len(churned))
        status, body = cluster.http("GET", "/kv?prefix=list/&keys_only=1&limit=1000")
        keys = [kv["key"] for kv in body["kvs"]]
        assert keys == sorted(keys) and set(expected) <= set(keys) and "value" not in body["kvs"][0]
    finally:
        stop.set()
        writer.join(30)
    assert cluster.http("GET", "/kv?prefix=x&limit=0")[0] == 400
