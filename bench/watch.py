#!/usr/bin/env python3
"""Watch figures (issue 13): watchers held, commit-to-delivery latency, and what idle watchers cost.

    bench/watch.py                          # all three, as docs/PERFORMANCE.md quotes them
    bench/watch.py --only held --watchers 10000
    bench/watch.py --only latency --rate 1000 --seconds 10
    bench/watch.py --only idle --seconds 10

- held: N watchers at once through nginx, half /watch streams and half blocking queries, each on its own key;
  the master's and nginx's threads and RSS while they wait, then a write to a sample of the keys that each of
  its watchers must see.
- latency: 1,000 streams on 1,000 keys and writes at a fixed rate spread over the keys (each stream gets
  rate/1000 events a second); per event, from the write's answer (the commit is durable and published just
  before it) and from the write's request to the event's arrival: p50, p99, max.
- idle: put and get throughput (wrk, as bench/run.sh) with no watcher and with 1,000 idle streams, and the CPU
  time the cluster's processes (master, replicas, nginx) spent per request, which the machine's load moves far
  less than throughput: on 2 shared cores throughput drifts by 2x between runs of the same thing.

Runs a real cluster on free loopback ports in a temporary directory (release binaries), prints markdown tables
and stops everything it started. Every loop is bounded in count and time.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402



def proc_figures(pid):
    """(threads, RSS in MiB) of a process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


def nginx_figures(cluster):
    """Threads and RSS summed over nginx's master and worker processes."""
    master = cluster._pid("nginx")
    pids = [master] + [int(p) for p in subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                                       text=True).stdout.split()]
    figures = [proc_figures(pid) for pid in pids]
    return sum(t for t, _ in figures), sum(r for _, r in figures), len(pids) - 1


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


class Watcher:
    """One waiting request on its own connection: a /watch stream or a blocking GET."""

    def __init__(self, port, path):
        self.port = port
        self.path = path
        self.reader = self.writer = None
        self.events = []  # (arrival monotonic time, data dict)

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        # HTTP/1.0: nginx answers without chunked framing, so every line read is an event stream's line.
        self.writer.write(f"GET {self.path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        await self.writer.drain()

    async def expect_ok(self):
        """Reads the response head; raises unless it is 200 (a refused watcher must not pass for a quiet one)."""
        status = await asyncio.wait_for(self.reader.readline(), 60)
        if b" 200 " not in status:
            raise RuntimeError(f"{self.path}: {status!r}")
        while (await self.reader.readline()) not in (b"\r\n", b""):
            pass

    async def read_events(self, until_ready=False, deadline=None, count=None, kinds=("put", "delete")):
        """Reads SSE events until the deadline, the stream's end, `count` changes (of `kinds`) in all, or with
        `until_ready` the `ready` event."""
        event, data = None, None
        while deadline is None or time.monotonic() < deadline:
            timeout = None if deadline is None else max(0.01, deadline - time.monotonic())
            try:
                line = await asyncio.wait_for(self.reader.readline(), timeout)
            except asyncio.TimeoutError:
                return
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\r\n")
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                data = text[6:]
            elif text == "" and event:
                if event == "ready" and until_ready:
                    return
                if event in kinds:
                    self.events.append((time.monotonic(), json.loads(data)))
                    if count is not None and len(self.events) >= count:
                        return
                event, data = None, None

    async def read_answer(self):
        """The status line of a blocking query's answer, once it comes."""
        line = await self.reader.readline()
        return int(line.split()[1]) if line else None

    def close(self):
        if self.writer:
            self.writer.close()


async def put(port, key, value):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = value.encode()
        writer.write(f"PUT /kv/{key} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        response = await reader.read()
        head, _, payload = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload
    finally:
        writer.close()


def status(cluster):
    return cluster.http("GET", "/status")[1]


async def wait_held(cluster, queries, streams, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        watch = status(cluster)["watch"]
        if watch["blocking_queries"] >= queries and watch["streams"] >= streams:
            return watch
        await asyncio.sleep(0.2)
    raise TimeoutError(f"watchers not held after {timeout_s}s: {status(cluster)['watch']}")


async def held(cluster, count):
    index = status(cluster)["index"]
    streams = [Watcher(cluster.http_port, f"/watch?key=held/{i}") for i in range(count // 2)]
    # The wait is short enough that the master lets them go soon after the clients leave (a parked request whose
    # client went away is found only when it is answered, or for a stream at its next heartbeat).
    queries = [Watcher(cluster.http_port, f"/kv/held/{i}?index={index}&wait=40s")
               for i in range(count // 2, count)]
    started = time.monotonic()
    for batch in range(0, len(streams + queries), 500):
        await asyncio.gather(*(w.open() for w in (streams + queries)[batch:batch + 500]))
    await asyncio.gather(*(w.expect_ok() for w in streams))
    await asyncio.gather(*(w.read_events(until_ready=True, deadline=time.monotonic() + 120) for w in streams))
    watch = await wait_held(cluster, len(queries), len(streams), 120)
    opened_s = time.monotonic() - started
    master_threads, master_rss = proc_figures(cluster._pid("master"))
    nginx_threads, nginx_rss, nginx_workers = nginx_figures(cluster)
    # Each sampled key's watcher must see its write.
    sample = random.Random(7).sample(range(count), 100)
    for i in sample:
        code, _ = await put(cluster.http_port, f"held/{i}", "x")
        assert code == 200, code
    for i in sample:
        if i < count // 2:
            await streams[i].read_events(deadline=time.monotonic() + 10, count=1)
        else:
            code = await asyncio.wait_for(queries[i - count // 2].read_answer(), 10)
            assert code == 200, code
    missing = [i for i in sample if i < count // 2 and not streams[i].events]
    for w in streams + queries:
        w.close()
    await wait_released(cluster, 90)
    return {"watchers": count, "streams": watch["streams"], "blocking": watch["blocking_queries"],
            "opened_s": opened_s, "master_threads": master_threads, "master_rss": master_rss,
            "workers": cluster.config["master"]["worker_threads"], "nginx_threads": nginx_threads,
            "nginx_rss": nginx_rss, "nginx_workers": nginx_workers, "sample_missing": len(missing)}


async def latency(cluster, watchers, rate, seconds, writers=16):
    streams = [Watcher(cluster.http_port, f"/watch?key=lat/{i}") for i in range(watchers)]
    for batch in range(0, watchers, 500):
        await asyncio.gather(*(w.open() for w in streams[batch:batch + 500]))
    await asyncio.gather(*(w.expect_ok() for w in streams))
    await asyncio.gather(*(w.read_events(until_ready=True, deadline=time.monotonic() + 60) for w in streams))
    total = int(rate * seconds)
    sent, answered = {}, {}
    start = time.monotonic() + 0.5
    readers = [asyncio.ensure_future(w.read_events(deadline=start + seconds + 15)) for w in streams]

    async def writer(offset):
        for n in range(offset, total, writers):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[n] = time.monotonic()
            code, body = await put(cluster.http_port, f"lat/{n % watchers}", str(n))
            if code == 200:
                answered[n] = time.monotonic()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(len(w.events) for w in streams) < len(answered):
        await asyncio.sleep(0.1)
    for task in readers:
        task.cancel()
    for w in streams:
        w.close()
    await wait_released(cluster, 60)
    from_answer, from_request = [], []
    for w in streams:
        for arrival, data in w.events:
            n = int(data["value"])
            if n in answered:
                from_answer.append((arrival - answered[n]) * 1000)
                from_request.append((arrival - sent[n]) * 1000)
    elapsed = max(answered.values()) - start if answered else float("nan")
    return {"watchers": watchers, "rate": rate, "writes": len(answered), "of": total, "events": len(from_answer),
            "achieved_rate": len(answered) / elapsed,
            "answer_p50": percentile(from_answer, 50), "answer_p99": percentile(from_answer, 99),
            "answer_max": max(from_answer, default=float("nan")),
            "request_p50": percentile(from_request, 50), "request_p99": percentile(from_request, 99)}


def cluster_cpu_s(cluster):
    """CPU seconds (user and system) the cluster's server processes have used so far: the master, the replicas,
    nginx's master and workers."""
    pids = [pid for pid in (cluster._pid(name) for name in list(cluster.procs)) if pid]
    nginx = cluster._pid("nginx")
    if nginx:
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(nginx)], capture_output=True,
                                                text=True).stdout.split()]
    total = 0
    for pid in set(pids):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def wrk(cluster, script, seconds, connections):
    """(requests/s, cluster CPU microseconds per request) of one wrk run."""
    # No wrk time-out, as before: this measures throughput, and a slow request counts as slow, not as an error.
    before = cluster_cpu_s(cluster)
    summary = cluster.wrk(script, connections, seconds, env={"KV_KEYS": "1000"}, timeout_s="2s")
    spent = cluster_cpu_s(cluster) - before
    done = summary["requests"] - summary["non2xx"]
    return done / (summary["duration_us"] / 1e6), spent * 1e6 / max(1, done)


async def idle(cluster, watchers, seconds, connections, rounds):
    for i in range(1000):  # the keys get.lua reads
        code, _ = await put(cluster.http_port, f"key{i}", "v" * 32)
        assert code == 200
    results = {"none": {"put": [], "get": []}, "idle": {"put": [], "get": []}}
    cpu = {"none": {"put": [], "get": []}, "idle": {"put": [], "get": []}}
    streams = []
    for number in range(rounds):
        # ABBA: each mode goes first in half the rounds. Always measuring "none" first put it right after the
        # quiet wait for closed streams to be let go, and "idle" right after opening 1,000 streams, an order
        # effect of its own.
        for mode in ("none", "idle") if number % 2 == 0 else ("idle", "none"):
            if mode == "idle" and not streams:
                streams = [Watcher(cluster.http_port, f"/watch?key=idle/{i}") for i in range(watchers)]
                for batch in range(0, watchers, 500):
                    await asyncio.gather(*(w.open() for w in streams[batch:batch + 500]))
                await wait_held(cluster, 0, watchers, 60)
            if mode == "none" and streams:
                for w in streams:
                    w.close()
                streams = []
                await wait_held_at_most(cluster, 0)
            for kind in ("put", "get"):
                rate, cpu_us = await asyncio.to_thread(wrk, cluster, f"{kind}.lua", seconds, connections)
                results[mode][kind].append(rate)
                cpu[mode][kind].append(cpu_us)
    for w in streams:
        w.close()
    return results, cpu


async def wait_released(cluster, timeout_s):
    """Until the master holds no watcher (the next phase must not find watch.watchers_max taken by the last)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        watch = status(cluster)["watch"]
        if watch["streams"] == 0 and watch["blocking_queries"] == 0:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"watchers not let go after {timeout_s}s: {status(cluster)['watch']}")


async def wait_held_at_most(cluster, streams, timeout_s=60):
    # Closed streams are let go at their next write (a heartbeat, every watch.heartbeat_ms: 15 s).
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if status(cluster)["watch"]["streams"] <= streams:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("closed streams were not let go")


def print_comparison(figures, unit, decimals):
    """One markdown table of `idle`'s figures (per mode and kind, one per round): medians and their ratio."""
    print(f"\n| | none ({unit}) | 1,000 idle ({unit}) | ratio of medians | median of round ratios |\n"
          "|---|---|---|---|---|")
    for kind in ("put", "get"):
        none = sorted(figures["none"][kind])[len(figures["none"][kind]) // 2]
        with_idle = sorted(figures["idle"][kind])[len(figures["idle"][kind]) // 2]
        ratios = sorted(i / n for i, n in zip(figures["idle"][kind], figures["none"][kind]))
        print(f"| {kind} | {none:.{decimals}f} | {with_idle:.{decimals}f} | {with_idle / none:.3f} | "
              f"{ratios[len(ratios) // 2]:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["held", "latency", "idle"])
    parser.add_argument("--watchers", type=int, default=10000, help="for held")
    parser.add_argument("--rate", type=int, default=1000, help="writes per second, for latency")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, for idle")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections, for idle")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    root = tempfile.mkdtemp(prefix="kv-bench-watch-")
    os.chmod(root, 0o755)
    cluster = kvcluster.Cluster.generate(os.path.join(root, "kv"), watch={"watchers_max": max(10000, args.watchers)})
    try:
        cluster.start()
        if args.only in (None, "held"):
            r = asyncio.run(held(cluster, args.watchers))
            print(f"\n### {r['watchers']} watchers held ({r['streams']} streams, {r['blocking']} blocking queries)\n")
            print("| process | threads | RSS (MiB) |\n|---|---|---|")
            print(f"| kv-master ({r['workers']} FastCGI workers) | {r['master_threads']} | {r['master_rss']:.0f} |")
            print(f"| nginx ({r['nginx_workers']} workers) | {r['nginx_threads']} | {r['nginx_rss']:.0f} |")
            print(f"\nopened in {r['opened_s']:.1f} s; 100 sampled keys written, watchers that missed theirs: "
                  f"{r['sample_missing']}")
        if args.only in (None, "latency"):
            r = asyncio.run(latency(cluster, 1000, args.rate, args.seconds))
            print(f"\n### Delivery latency, {r['watchers']} streams, {r['rate']} writes/s asked "
                  f"({r['achieved_rate']:.0f} achieved, {r['writes']} of {r['of']} writes, {r['events']} events)\n")
            print("| from | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|")
            print(f"| the write's answer | {r['answer_p50']:.2f} | {r['answer_p99']:.2f} | {r['answer_max']:.2f} |")
            print(f"| the write's request | {r['request_p50']:.2f} | {r['request_p99']:.2f} | – |")
        if args.only in (None, "idle"):
            r, cpu = asyncio.run(idle(cluster, 1000, args.seconds, args.connections, args.rounds))
            print(f"\n### Throughput with 1,000 idle streams ({args.rounds} ABBA rounds of "
                  f"{args.seconds} s, wrk -c{args.connections}, medians)")
            print_comparison(r, "req/s", 0)
            print_comparison(cpu, "CPU µs/request", 1)
            for kind in ("put", "get"):
                pairs = "  ".join(f"{n:.0f}/{i:.0f}" for n, i in zip(r["none"][kind], r["idle"][kind]))
                print(f"\n{kind} req/s per round (none/idle, ABBA order): {pairs}")
                pairs = "  ".join(f"{n:.1f}/{i:.1f}" for n, i in zip(cpu["none"][kind], cpu["idle"][kind]))
                print(f"{kind} CPU µs/request per round (none/idle): {pairs}")
    finally:
        cluster.kill_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
