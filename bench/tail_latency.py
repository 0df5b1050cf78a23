#!/usr/bin/env python3
"""Tail latency at 64 clients on an idle cluster whose data is on tmpfs: the slowest GET and PUT, p99 and
requests per second, over several rounds.

    bench/tail_latency.py [--rounds 3] [--seconds 5] [--connections 64]

What it watches for: with nginx's `fastcgi_keep_conn on` each upstream connection pins a libfcgi worker thread,
so a master pool smaller than nginx's connection count shows up as ~1 s stalls in the max column. This was a
pass/fail test (slowest GET < 100 ms, PUT < 250 ms) until it failed on a busy shared machine with nothing wrong
in the servers; as a figure it is read beside the machine's other numbers (docs/PERFORMANCE.md). The test suite
keeps the part that cannot flake: at 64 clients every request is answered 2xx (Tests/integration/test_latency.py).

Runs a real cluster (release binaries, KV_BIN_DIR) on free loopback ports under /dev/shm, stops what it started.
Every wrk run is bounded in time.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="kv-bench-tail-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.chmod(root, 0o755)
    cluster = kvcluster.Cluster.generate(os.path.join(root, "kv"))
    try:
        cluster.start()
        for i in range(200):
            assert cluster.http("PUT", f"/kv/key{i}", body=b"v" * 64)[0] == 200
        cluster.wrk("get.lua", args.connections, 1, env={"KV_KEYS": "200"})  # opens nginx's upstream connections
        print(f"\n### {args.connections} clients, data on tmpfs, {args.seconds} s a run\n")
        print("| round | op | requests/s | p99 (ms) | max (ms) | errors |\n|---|---|---|---|---|---|")
        for round_no in range(1, args.rounds + 1):
            for op, script, keys in (("GET", "get.lua", "200"), ("PUT", "put.lua", "10000")):
                s = cluster.wrk(script, args.connections, args.seconds, env={"KV_KEYS": keys})
                print(f"| {round_no} | {op} | {s['requests'] / args.seconds:,.0f} | {s['p99_us'] / 1000:.1f} | "
                      f"{s['max_us'] / 1000:.1f} | {s['socket_errors'] + s['non2xx']} |", flush=True)
    finally:
        cluster.kill_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
