#!/usr/bin/env python3
"""Two builds of kv, A/B, interleaved: is a change within a few percent of the build before it?

Full runs of bench/run.sh for each build, one after the other, move by 15-20% on a shared 2-core machine
(docs/PERFORMANCE.md, Noise): the machine changes between them. Here both clusters run at once, on free
loopback ports, and short wrk runs alternate between them, round after round (the order flips every round), so
both builds see the same machine. Idle, a cluster costs nothing measurable. Reports the median req/s of each
build per case and in how many rounds the second build was faster.

    bench/ab.py --base /tmp/base/.build/release                    # base vs this checkout's release build
    bench/ab.py --base A --head B --rounds 10 --cases put:1,put:16,put:64,get:16,get:64
    bench/ab.py --base B --head B --link-tls head                  # what mutual TLS on the cluster links costs
    bench/ab.py --base B --head B --https head --tokens head       # what HTTPS through nginx and tokens cost

Build the base in a worktree first: git worktree add /tmp/base <commit> && (cd /tmp/base && swift build -c release).
Every process it starts is stopped by PID at the end, also on failure or Ctrl-C. Every wrk run is bounded by -d.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import yaml

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import kvcluster  # noqa: E402

LUA_DIR = os.path.join(BENCH, "lua")


def wrk(cluster, op, connections, seconds, keys, https=False):
    env = dict(os.environ, BENCH_LUA_DIR=LUA_DIR, BENCH_KEYS=str(keys), BENCH_VALUE_BYTES="64",
               BENCH_THREADS=str(min(2, connections)), BENCH_MAX_REQUESTS="0")
    url = f"https://127.0.0.1:{cluster.https_port}" if https else f"http://127.0.0.1:{cluster.http_port}"
    # The scripts' requests take wrk's headers (-H) when they name none.
    headers = ["-H", f"Authorization: Bearer {cluster.token}"] if cluster.token else []
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", *headers,
                          "-s", os.path.join(LUA_DIR, f"kv_{op}.lua"), url],
                         capture_output=True, text=True, env=env, timeout=seconds + 60)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not found:
        raise RuntimeError(f"wrk printed no rate for {op} c={connections}: {out.stdout[-300:]}{out.stderr[-300:]}")
    return float(found.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="bin dir of the build to compare against")
    parser.add_argument("--head", default=kvcluster.default_bin_dir(), help="bin dir of the build under test")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--cases", default="put:16,put:64,get:64", help="op:connections, comma-separated")
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--no-key", choices=["base", "head", "both"],
                        help="run that build's cluster without a cluster key (a build from before link "
                             "authentication does not know the setting; or to measure what it costs)")
    parser.add_argument("--link-tls", choices=["base", "head", "both"],
                        help="run that build's cluster with mutual TLS on its cluster links (security.tls); with the "
                             "same --base and --head, what TLS costs")
    parser.add_argument("--tokens", choices=["base", "head", "both"],
                        help="that build's HTTP API needs a bearer token (security.tokens_file), which wrk sends")
    parser.add_argument("--https", choices=["base", "head", "both"],
                        help="wrk talks to that build's nginx over HTTPS (TLS 1.3, keep-alive) instead of plain HTTP")
    args = parser.parse_args()
    cases = [(op, int(n)) for op, n in (case.split(":") for case in args.cases.split(","))]
    builds = {"base": args.base, "head": args.head}
    shipped = yaml.safe_load(open(os.path.join(REPO, "cluster.yaml")))
    clusters = {}
    try:
        for name, bin_dir in builds.items():
            root = tempfile.mkdtemp(prefix=f"kv-ab-{name}-")
            os.chmod(root, 0o755)
            cluster = kvcluster.Cluster.generate(
                os.path.join(root, "kv"), timeouts=shipped.get("timeouts"), limits=shipped.get("limits"),
                storage=shipped.get("storage"), worker_threads=shipped["master"].get("worker_threads", 96),
                authenticated=args.no_key not in (name, "both"), link_tls=args.link_tls in (name, "both"),
                tokens=args.tokens in (name, "both"))
            cluster.bin_dir = bin_dir
            cluster.start()
            clusters[name] = cluster
            wrk(cluster, "put", 16, 4, args.keys, https=args.https in (name, "both"))  # writes the keys the gets read
        rates = {}
        for round_index in range(args.rounds):
            order = list(builds) if round_index % 2 == 0 else list(reversed(list(builds)))
            for op, connections in cases:
                for name in order:
                    rate = wrk(clusters[name], op, connections, args.seconds, args.keys,
                               https=args.https in (name, "both"))
                    rates.setdefault((op, connections, name), []).append(rate)
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        print(f"base {args.base}\nhead {args.head}\n{args.rounds} rounds of {args.seconds} s, req/s medians\n")
        print("| case | base | head | change | head faster in |")
        print("|---|---|---|---|---|")
        for op, connections in cases:
            base, head = rates[(op, connections, "base")], rates[(op, connections, "head")]
            base_median, head_median = statistics.median(base), statistics.median(head)
            wins = sum(1 for b, h in zip(base, head) if h > b)
            print(f"| {op} c={connections} | {base_median:.0f} | {head_median:.0f} | "
                  f"{(head_median / base_median - 1) * 100:+.1f}% | {wins} of {len(base)} |")
        print("\nper round (base / head):")
        for op, connections in cases:
            pairs = zip(rates[(op, connections, "base")], rates[(op, connections, "head")])
            print(f"  {op} c={connections}: " + "  ".join(f"{b:.0f}/{h:.0f}" for b, h in pairs))
    finally:
        for cluster in clusters.values():
            cluster.kill_all()


if __name__ == "__main__":
    main()
