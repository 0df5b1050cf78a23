"""Load test of the FastCGI worker pool sizing: at 64 concurrent clients on an idle cluster no request may take
over 100 ms. With nginx `fastcgi_keep_conn on` each upstream connection pins a libfcgi worker thread, so a pool
smaller than nginx's connection count shows up here as ~1 s stalls.

The cluster keeps its data on tmpfs. A put waits for three fsyncs in sequence; on this machine's shared disk a
single fsync has taken 300 ms and more (benchmarks of the same day saw etcd's put p99 at 60-75 ms and kv's
slowest put at 1.2 s, for every build), so on disk the slowest put measured the disk and this test failed now and
then (357 ms against a 250 ms bound) with nothing wrong in the servers. Durability under load is measured by
bench/ and the crash tests, not here."""
import json
import os
import shutil
import subprocess

import pytest

from kvcluster import REPO

LUA_DIR = os.path.join(REPO, "bench", "lua")


def run_wrk(cluster, script, connections, seconds, env=None):
    full_env = dict(os.environ, KV_LUA_DIR=LUA_DIR, **(env or {}))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", os.path.join(LUA_DIR, script),
         f"http://127.0.0.1:{cluster.http_port}"],
        capture_output=True, text=True, env=full_env, timeout=seconds + 60, check=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("KV_WRK_SUMMARY "))
    summary = json.loads(line.split(" ", 1)[1])
    print(f"{script} c={connections}: {summary}")
    return summary


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by scripts/setup.sh")
def test_no_request_over_100ms_at_64_clients(memory_cluster):
    cluster = memory_cluster
    keys = 200
    for i in range(keys):
        assert cluster.http("PUT", f"/kv/key{i}", body=b"v" * 64)[0] == 200
    # Warm-up opens nginx's upstream connections; then the measured run.
    run_wrk(cluster, "get.lua", 64, 1, env={"KV_KEYS": str(keys)})
    gets = run_wrk(cluster, "get.lua", 64, 5, env={"KV_KEYS": str(keys)})
    assert gets["socket_errors"] == 0 and gets["non2xx"] == 0, gets
    assert gets["requests"] > 1000, gets
    assert gets["max_us"] < 100_000, f"slowest GET took {gets['max_us'] / 1000:.1f} ms: {gets}"

    puts = run_wrk(cluster, "put.lua", 64, 5, env={"KV_KEYS": "10000"})
    assert puts["socket_errors"] == 0 and puts["non2xx"] == 0, puts
    assert puts["requests"] > 1000, puts
    assert puts["max_us"] < 100_000, f"slowest PUT took {puts['max_us'] / 1000:.1f} ms: {puts}"
