#!/usr/bin/env python3
"""Time to add a fresh replica to a store of N keys (state transfer: snapshot copy, catch-up, verified join).

    bench/sync_time.py                   # 50k and 500k keys, idle cluster
    bench/sync_time.py --keys 50000

Runs a real cluster (release binaries) on free loopback ports in a temporary directory, preloads N keys into
the three replicas directly over the wire (identical on all), adds r4 to cluster.yaml, reloads the master and
measures until r4 reports `joined`, then checks all four replicas are identical (GET /status?verify=1).
"""
import argparse
import copy
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402


def measure(root, keys, value_bytes):
    cluster = kvcluster.Cluster.generate(os.path.join(root, f"sync-{keys}"))
    try:
        cluster.start()
        cluster.preload(keys, value_bytes)
        config = copy.deepcopy(cluster.config)
        config["replicas"].append({"id": "r4", "host": "127.0.0.1", "port": kvcluster.free_port(),
                                   "data_dir": "data/r4"})
        cluster.write_config(config)
        cluster.start_replica("r4")
        started = time.monotonic()
        status, body = cluster.reload_master()
        assert status == 200, body
        kvcluster.wait_until(lambda: cluster.stat("r4")["joined"], 1800, "r4 to join")
        seconds = time.monotonic() - started
        status, body = cluster.http("GET", "/status?verify=1")
        assert body["verify"]["identical"], body
        return seconds
    finally:
        cluster.kill_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, action="append")
    parser.add_argument("--value-bytes", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kv-sync-") as root:
        os.chmod(root, 0o755)
        print("| keys | value bytes | time to sync and join r4 (s) | keys/s |\n|---|---|---|---|")
        for keys in args.keys or [50_000, 500_000]:
            seconds = measure(root, keys, args.value_bytes)
            print(f"| {keys} | {args.value_bytes} | {seconds:.2f} | {keys / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
