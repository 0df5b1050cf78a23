"""The user's scenario: many threads put, get and delete the same keys at the same moment."""
import collections
import random
import threading

from crash_helpers import wait_healthy
from helpers import assert_kv_json, replica_contents, run_threads

KEYS = ["alpha", "beta", "gamma"]


def test_concurrent_same_keys_conflict_cleanly_and_replicas_agree(cluster):
    seen = collections.Counter()
    lock = threading.Lock()
    acknowledged = {}

    def worker(index, stop, max_ops):
        rng = random.Random(index)
        for n in range(max_ops):
            if stop.is_set():
                return
            key = rng.choice(KEYS)
            op = rng.choice(["PUT", "PUT", "GET", "DELETE"])
            value = f"t{index}-{n}".encode()
            status, body = cluster.http(op, "/kv/" + key, body=value if op == "PUT" else None)
            assert_kv_json(status, body)
            if op == "GET":
                assert status in (200, 404), body
            else:
                assert status in (200, 404, 409), body
                if status == 409:
                    assert "concurrent transaction" in body["message"], body
                if status == 404:
                    assert op == "DELETE"
            with lock:
                seen[(op, status)] += 1
                if status == 200 and op != "GET":
                    prev = acknowledged.get(key)
                    if prev is None or body["seq"] > prev[0]:
                        acknowledged[key] = (body["seq"], value.decode() if op == "PUT" else None)

    run_threads(12, worker, duration_s=20, max_ops=120)
    conflicts = seen[("PUT", 409)] + seen[("DELETE", 409)]
    commits = seen[("PUT", 200)] + seen[("DELETE", 200)]
    print(f"outcomes: {dict(seen)}")
    assert commits > 0 and conflicts > 0, seen

    # No transaction is left holding a lock, and every replica holds the same data, once the last commits are
    # delivered (a 200 comes before the replicas' acks).
    wait_healthy(cluster)
    for rid in cluster.replica_ids:
        assert cluster.stat(rid)["in_doubt"] == []
    contents = [replica_contents(cluster, rid, [k.encode() for k in KEYS]) for rid in cluster.replica_ids]
    assert contents[0] == contents[1] == contents[2]
    assert len({cluster.stat(rid)["digest"] for rid in cluster.replica_ids}) == 1
    # The final state is the last acknowledged write of each key.
    for key, (seq, value) in acknowledged.items():
        got = contents[0][key.encode()]
        if value is None:
            assert got is None, (key, got)
        else:
            assert got == (value, seq), (key, got, seq)
