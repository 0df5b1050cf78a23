#!/usr/bin/env python3
"""What 1,000 idle watchers cost (issue 13), measured against a twin cluster in the same instant.

    bench/idle_watchers.py --rounds 6 --seconds 8

On this machine (2 shared cores) the throughput of one cluster drifts by 2x between runs minutes apart, so a 5%
effect cannot be seen by running "without" and "with" one after the other (bench/watch.py --only idle does
that). Here two identical clusters run side by side, one holding 1,000 idle /watch streams, and wrk loads both
at once with the same script: whatever the machine does, it does to both. Each round swaps which cluster holds
the streams, so a difference between the clusters themselves cancels out. Reported per round: the twin with the
streams against the one without (requests/s), and the median of those ratios.

Real clusters on free loopback ports in a temporary directory (release binaries); every loop is bounded in
count and time; stops everything it started.
"""
import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402
from watch import Watcher, put, wait_held, wait_held_at_most  # noqa: E402


def wrk_both(clusters, script, seconds, connections):
    """Requests/s of each cluster, loaded at the same time."""
    rates = [None, None]

    def run(position):
        summary = clusters[position].wrk(script, connections, seconds, env={"KV_KEYS": "1000"}, timeout_s="2s")
        rates[position] = (summary["requests"] - summary["non2xx"]) / (summary["duration_us"] / 1e6)

    threads = [threading.Thread(target=run, args=(position,)) for position in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 90)
    if None in rates:
        raise RuntimeError("a wrk run did not finish")
    return rates


async def rounds(clusters, watchers, seconds, connections, count):
    for cluster in clusters:
        for i in range(1000):  # the keys get.lua reads
            code, _ = await put(cluster.http_port, f"key{i}", "v" * 32)
            assert code == 200
    ratios = {"put": [], "get": []}
    pairs = {"put": [], "get": []}
    for number in range(count):
        holder = number % 2
        streams = [Watcher(clusters[holder].http_port, f"/watch?key=idle/{i}") for i in range(watchers)]
        for batch in range(0, watchers, 500):
            await asyncio.gather(*(w.open() for w in streams[batch:batch + 500]))
        await wait_held(clusters[holder], 0, watchers, 60)
        for kind in ("put", "get"):
            rates = await asyncio.to_thread(wrk_both, clusters, f"{kind}.lua", seconds, connections)
            with_streams, without = rates[holder], rates[1 - holder]
            ratios[kind].append(with_streams / without)
            pairs[kind].append((without, with_streams))
        for w in streams:
            w.close()
        await wait_held_at_most(clusters[holder], 0)
    return ratios, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections to each cluster")
    parser.add_argument("--watchers", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    root = tempfile.mkdtemp(prefix="kv-bench-idle-")
    os.chmod(root, 0o755)
    clusters = [kvcluster.Cluster.generate(os.path.join(root, name), watch={"watchers_max": 10000})
                for name in ("a", "b")]
    try:
        for cluster in clusters:
            cluster.start()
        ratios, pairs = asyncio.run(rounds(clusters, args.watchers, args.seconds, args.connections, args.rounds))
        print(f"\n### {args.watchers} idle streams against a twin cluster loaded at the same time ({args.rounds} "
              f"rounds of {args.seconds} s, wrk -c{args.connections} to each, the streams on alternate twins)\n")
        print("| | median ratio (with / without) | lowest | highest |\n|---|---|---|---|")
        for kind in ("put", "get"):
            ordered = sorted(ratios[kind])
            print(f"| {kind} | {ordered[len(ordered) // 2]:.3f} | {ordered[0]:.3f} | {ordered[-1]:.3f} |")
        for kind in ("put", "get"):
            text = "  ".join(f"{a:.0f}/{b:.0f}" for a, b in pairs[kind])
            print(f"\n{kind} req/s per round (without/with): {text}")
    finally:
        for cluster in clusters:
            cluster.kill_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
