#!/usr/bin/env python3
"""Durability figures: fsyncs per committed write under load, and replica recovery time for N keys.

    bench/durability.py                      # both, 100k and 1M keys
    bench/durability.py --keys 100000        # recovery for one size only
    bench/durability.py --skip-recovery      # fsyncs per write only

Runs a real cluster on free loopback ports in a temporary directory (release binaries from
`swift build -c release`), prints a markdown table, and stops everything it started.
"""
import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402



def fsyncs_per_write(root, seconds, connections):
    cluster = kvcluster.Cluster.generate(os.path.join(root, "load"))
    try:
        cluster.start()
        before = cluster.http("GET", "/status")[1]
        summary = cluster.wrk("put.lua", connections, seconds, timeout_s="2s")
        after = cluster.http("GET", "/status")[1]
        writes = summary["requests"] - summary["non2xx"]
        rows = []
        for b, a in zip(before["replicas"], after["replicas"]):
            rows.append((a["id"], (a["log_syncs"] - b["log_syncs"]) / max(1, writes)))
        master = (after["decision_log_syncs"] - before["decision_log_syncs"]) / max(1, writes)
        return summary, writes, rows, master
    finally:
        cluster.kill_all()


def load_replica_directly(cluster, rid, keys, value_bytes=64):
    """Writes `keys` keys straight into one replica over the wire (prepare + commit, pipelined)."""
    r = cluster.replica(rid)
    client = kvcluster.WireClient(r["host"], int(r["port"]), timeout_s=120, key=cluster.wire_key(),
                                  client_id="bench", tls=cluster.link_tls_context())
    value = b"v" * value_bytes
    batch = 2000
    seq = 1
    try:
        # A replica with a new data directory is out of sync until told to join (the master does this when
        # it bootstraps a new cluster); this replica is loaded directly, so it joins first.
        assert client.call(b";join;;")[0]["status"]
        for start in range(0, keys, batch):
            lines = []
            for i in range(start, min(keys, start + batch)):
                lines.append(b"%d;put;key%d;%s" % (seq, i, value))
                lines.append(b"%d;com;;" % seq)
                seq += 1
            replies = client.call(*lines)
            assert all(reply["status"] for reply in replies), replies[:3]
    finally:
        client.close()


def recovery(root, keys):
    cluster = kvcluster.Cluster.generate(os.path.join(root, f"recovery-{keys}"), replicas=1)
    try:
        cluster.start_replica("r1")
        started = time.monotonic()
        load_replica_directly(cluster, "r1", keys)
        load_s = time.monotonic() - started
        stat = cluster.stat("r1")
        assert stat["keys"] == keys, stat
        cluster.kill_replica("r1")
        t0 = time.monotonic()
        cluster.start_replica("r1")
        ready_s = time.monotonic() - t0
        after = cluster.stat("r1")
        assert after["digest"] == stat["digest"] and after["keys"] == keys, (stat, after)
        report = [l for l in cluster.log("r1").splitlines() if "restored" in l][-1]
        match = re.search(r"restored (\d+) keys from snapshot (\d+) in (\d+) ms.*replayed (\d+) log records", report)
        return {"keys": keys, "load_s": load_s, "ready_s": ready_s, "snapshot_keys": int(match.group(1)),
                "snapshot_ms": int(match.group(3)), "replayed_records": int(match.group(4)),
                "keys_per_s": keys / ready_s}
    finally:
        cluster.kill_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, action="append", help="recovery sizes (default 100000 and 1000000)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kv-bench-") as root:
        os.chmod(root, 0o755)
        summary, writes, rows, master = fsyncs_per_write(root, args.seconds, args.connections)
        print(f"## fsyncs per committed write ({args.connections} connections, {args.seconds} s, 64-byte puts)\n")
        print(f"committed writes: {writes} ({summary['rps']:.0f}/s, p99 {summary['p99_us'] / 1000:.1f} ms)\n")
        print("| process | fsyncs per committed write |\n|---|---|")
        for rid, ratio in rows:
            print(f"| replica {rid} | {ratio:.3f} |")
        print(f"| master decision log | {master:.3f} |\n")
        if args.skip_recovery:
            return
        print("## replica recovery after SIGKILL\n")
        print("| keys | restored from snapshot | snapshot load ms | log records replayed | ready after start (s) | keys/s |")
        print("|---|---|---|---|---|---|")
        for keys in args.keys or [100_000, 1_000_000]:
            r = recovery(root, keys)
            print(f"| {r['keys']} | {r['snapshot_keys']} | {r['snapshot_ms']} | {r['replayed_records']} | "
                  f"{r['ready_s']:.2f} | {r['keys_per_s']:.0f} |")


if __name__ == "__main__":
    main()
