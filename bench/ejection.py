#!/usr/bin/env python3
"""Writes answered 200 per second through a replica failure, strict mode against ejection (issue 14).

    bench/ejection.py [--eject-after-ms 1000] [--down-s 5] [--seconds 12] [--writers 8]

For each mode a fresh cluster (release binaries, free loopback ports, a temporary directory) takes a write load
from `--writers` threads through nginx, each on a keep-alive connection, putting fresh keys. At 3 s replica r2 is
SIGKILLed; `--down-s` later it is started again. Every answer is counted in 250 ms buckets by the time it came
back. Printed: per mode, the seconds during which writes failed (from the first failed answer after the kill to
the last), how many, and writes/s before, during and after; a plot (SVG, no dependencies) and a Markdown table go
to bench/results/ejection-<time>.{svg,md}. Every loop is bounded in count and time; stops what it started.
"""
import argparse
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import kvcluster  # noqa: E402

BUCKET_S = 0.25
KILL_AT_S = 3.0


def load(cluster, writers, seconds, stop, answers, lock):
    def run(index):
        conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=10)
        n = 0
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline and n < 1_000_000:
            n += 1
            try:
                conn.request("PUT", f"/kv/w{index}-{n}", body=b"x" * 32)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=10)
            with lock:
                answers.append((time.monotonic(), status))
        conn.close()
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    return threads


def run_mode(eject_after_ms, args):
    root = tempfile.mkdtemp(prefix=f"kv-bench-eject-{eject_after_ms}-")
    cluster = kvcluster.Cluster.generate(root, availability={"eject_after_ms": eject_after_ms})
    answers, lock, stop = [], threading.Lock(), threading.Event()
    try:
        cluster.start()
        started = time.monotonic()
        threads = load(cluster, args.writers, args.seconds, stop, answers, lock)
        time.sleep(KILL_AT_S)  # the schedule of the experiment, not a wait for readiness
        killed = time.monotonic()
        cluster.kill_replica("r2")
        time.sleep(args.down_s)
        restarted = time.monotonic()
        cluster.start_replica("r2")
        for t in threads:
            t.join(args.seconds + 30)
        stop.set()
    finally:
        stop.set()
        cluster.kill_all()
        shutil.rmtree(root, ignore_errors=True)
    return started, killed, restarted, answers


def summarize(name, started, killed, restarted, answers, seconds):
    buckets = int(seconds / BUCKET_S)
    ok = [0] * buckets
    for at, status in answers:
        index = int((at - started) / BUCKET_S)
        if 0 <= index < buckets and status == 200:
            ok[index] += 1
    failed = [at for at, status in answers if status != 200 and at >= killed]
    window = (max(failed) - killed) if failed else 0.0
    def rate(lo, hi):
        n = sum(1 for at, status in answers if status == 200 and lo <= at - started < hi)
        return n / (hi - lo) if hi > lo else 0.0
    kill_s, back_s = killed - started, restarted - started
    return {
        "name": name, "ok_per_s": [n / BUCKET_S for n in ok], "window_s": window, "failed": len(failed),
        "before": rate(0.5, kill_s), "down": rate(kill_s, back_s), "after": rate(back_s + 1.0, seconds - 0.5),
        "kill_s": kill_s, "back_s": back_s,
    }


def svg(results, seconds, path):
    width, height, left, bottom, top = 720, 320, 60, 40, 20
    peak = max(max(r["ok_per_s"]) for r in results) or 1
    def x(t): return left + (width - left - 20) * t / seconds
    def y(v): return height - bottom - (height - bottom - top) * v / peak
    colors = ["#c0392b", "#2471a3"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{x(seconds)}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>']
    for t in range(0, int(seconds) + 1, 2):
        parts.append(f'<text x="{x(t)}" y="{height - bottom + 16}" text-anchor="middle">{t} s</text>')
    for v in (0, peak / 2, peak):
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4}" text-anchor="end">{v:.0f}</text>')
    r0 = results[0]
    for t, label in ((r0["kill_s"], "r2 SIGKILL"), (r0["back_s"], "r2 started")):
        parts.append(f'<line x1="{x(t)}" y1="{top}" x2="{x(t)}" y2="{y(0)}" stroke="gray" stroke-dasharray="4"/>'
                     f'<text x="{x(t) + 4}" y="{top + 12}" fill="gray">{label}</text>')
    for i, result in enumerate(results):
        points = " ".join(f"{x((k + 0.5) * BUCKET_S):.1f},{y(v):.1f}" for k, v in enumerate(result["ok_per_s"]))
        parts.append(f'<polyline fill="none" stroke="{colors[i]}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - 200}" y="{top + 30 + 16 * i}" fill="{colors[i]}">{result["name"]}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}">writes answered 200 per second ({BUCKET_S * 1000:.0f} ms buckets)'
                 f'</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eject-after-ms", type=int, default=1000)
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    results = []
    for name, eject in (("strict (eject_after_ms 0)", 0), (f"ejection (eject_after_ms {args.eject_after_ms})",
                                                          args.eject_after_ms)):
        results.append(summarize(name, *run_mode(eject, args), args.seconds))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"ejection-{stamp}")
    svg(results, args.seconds, out + ".svg")
    lines = [f"# Writes through a replica failure, {stamp}", "",
             f"`bench/ejection.py --eject-after-ms {args.eject_after_ms} --down-s {args.down_s} --seconds "
             f"{args.seconds} --writers {args.writers}`: r2 SIGKILLed at {KILL_AT_S:.0f} s, started "
             f"{args.down_s:.0f} s later.", "",
             "| mode | writes failing for | failed writes | writes/s before | while r2 is down | after |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['window_s']:.2f} s | {r['failed']} | {r['before']:.0f} | {r['down']:.0f} | "
                     f"{r['after']:.0f} |")
    lines += ["", f"![writes per second]({os.path.basename(out)}.svg)", ""]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    print(f"written: {out}.md, {out}.svg")


if __name__ == "__main__":
    main()
