#!/usr/bin/env python3
"""Lease expiry accuracy (issue 13): how late after its TTL each of 10,000 leases expires, under a write load.

    bench/leases.py                              # 10,000 leases, TTL 20 s, 500 writes/s of load, as PERFORMANCE.md
    bench/leases.py --leases 1000 --ttl 5 --load 200

Grants the leases (each with one key attached) from 32 concurrent clients, watches the keys' prefix with one
/watch stream, and runs a bounded write load on other keys while they expire. A lease's lateness is the arrival
of its key's `expire` event minus (its grant's answer + TTL): the deadline starts when the grant is published,
just before the answer, so the figure is at most a little high. Real cluster on free loopback ports in a
temporary directory (release binaries); prints a markdown table and stops everything it started.
"""
import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402
from watch import Watcher  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


async def request(port, method, path, body=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        response = await reader.read()
        head, _, payload = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload) if payload.startswith(b"{") else None
    finally:
        writer.close()


async def run(cluster, leases, ttl, load, clients=32):
    port = cluster.http_port
    granted = {}  # key -> monotonic time of the grant's answer
    stream = Watcher(port, "/watch?prefix=lb/")
    await stream.open()
    await stream.expect_ok()
    await stream.read_events(until_ready=True, deadline=time.monotonic() + 30)
    watch = asyncio.create_task(stream.read_events(deadline=time.monotonic() + 600, count=leases, kinds=("expire",)))
    next_index = iter(range(leases))
    started = time.monotonic()

    async def granter():
        for i in next_index:
            status, body = await request(port, "POST", "/lease", json.dumps({"ttl_s": ttl}).encode())
            assert status == 200, body
            at = time.monotonic()
            status, body = await request(port, "PUT", f"/kv/lb/{i}?lease={body['id']}", b"v")
            assert status == 200, body
            granted[f"lb/{i}"] = at
    await asyncio.gather(*(granter() for _ in range(clients)))
    grant_s = time.monotonic() - started
    # The write load, bounded in count and time, until the last lease's TTL is over plus 5 s.
    stop_at = max(granted.values()) + ttl + 5
    written = 0

    async def loader(offset):
        nonlocal written
        n = 0
        while time.monotonic() < stop_at and n < load * 600:
            await request(port, "PUT", f"/kv/load/{offset}-{n % 100}", b"x" * 64)
            n += 1
            written += 1
            await asyncio.sleep(8 / load)
    await asyncio.gather(*(loader(k) for k in range(8)), watch)
    stream.close()
    arrivals = {data["key"]: at for at, data in stream.events}
    late = [(arrivals[key] - (at + ttl)) * 1000 for key, at in granted.items() if key in arrivals]
    return {"leases": leases, "ttl": ttl, "grant_s": grant_s, "expired": len(late), "load_writes": written,
            "load_s": stop_at - (min(granted.values()) + ttl), "p50": percentile(late, 50),
            "p99": percentile(late, 99), "max": max(late) if late else float("nan"),
            "min": min(late) if late else float("nan"), "over_1s": sum(1 for x in late if x > 1000)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=int, default=10000)
    parser.add_argument("--ttl", type=int, default=20)
    parser.add_argument("--load", type=int, default=500, help="writes per second to other keys while they expire")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="kv-bench-leases-")
    os.chmod(root, 0o755)
    cluster = kvcluster.Cluster.generate(os.path.join(root, "kv"))
    try:
        cluster.start()
        kvcluster.wait_until(lambda: cluster.http("GET", "/status")[1]["leases"]["loaded"], 30, "leases loaded")
        r = asyncio.run(run(cluster, args.leases, args.ttl, args.load))
        print(f"\n### Expiry of {r['leases']} leases, TTL {r['ttl']} s, each with one key (granted in "
              f"{r['grant_s']:.1f} s; {r['load_writes']} writes of load meanwhile)\n")
        print("| expired | lateness p50 (ms) | p99 (ms) | max (ms) | min (ms) | later than 1 s |\n|---|---|---|---|---|---|")
        print(f"| {r['expired']} of {r['leases']} | {r['p50']:.0f} | {r['p99']:.0f} | {r['max']:.0f} | "
              f"{r['min']:.0f} | {r['over_1s']} |")
    finally:
        cluster.kill_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
