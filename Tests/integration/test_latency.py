"""64 concurrent clients through nginx on an idle cluster (data on tmpfs): every GET and PUT is answered 2xx,
none times out or loses its connection.

With nginx `fastcgi_keep_conn on` each upstream connection pins a libfcgi worker thread, so a master pool smaller
than nginx's connection count shows up as ~1 s stalls. How slow the slowest request is was asserted here (GET
< 100 ms, PUT < 250 ms) and failed now and then on this shared 2-core machine with nothing wrong in the servers;
it is a figure now, measured by bench/tail_latency.py (docs/PERFORMANCE.md). What stays here cannot flake: a
stall past wrk's 5 s time-out, an error or a non-2xx answer fails."""


def run_wrk(cluster, script, connections, seconds, env):
    summary = cluster.wrk(script, connections, seconds, env=env)
    print(f"{script} c={connections}: {summary}")
    return summary


def test_64_clients_are_all_answered(memory_cluster):
    cluster = memory_cluster
    keys = 200
    for i in range(keys):
        assert cluster.http("PUT", f"/kv/key{i}", body=b"v" * 64)[0] == 200
    gets = run_wrk(cluster, "get.lua", 64, 3, env={"KV_KEYS": str(keys)})
    assert gets["socket_errors"] == 0 and gets["non2xx"] == 0, gets
    assert gets["requests"] > 0, gets
    puts = run_wrk(cluster, "put.lua", 64, 3, env={"KV_KEYS": "10000"})
    assert puts["socket_errors"] == 0 and puts["non2xx"] == 0, puts
    assert puts["requests"] > 0, puts
    # The puts really wrote: a sample of the keys they name reads back.
    status, body = cluster.http("GET", "/kv?prefix=key&keys_only=1&limit=1000")
    assert status == 200 and len(body["kvs"]) > keys, (status, str(body)[:300])
