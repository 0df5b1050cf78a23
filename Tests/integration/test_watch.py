"""Watch (issue 13): the change index on every answer, blocking queries, Server-Sent Event streams with resume,
compaction and restarts, and many waiters on a few worker threads. Real nginx, master and replicas."""
import json
import threading
import time

from helpers import running_cluster
from kvcluster import wait_until
from kvsse import EventStream


def status_watch(cluster):
    return cluster.http("GET", "/status")[1]["watch"]


def wait_watchers(cluster, queries=None, streams=None):
    def held():
        watch = status_watch(cluster)
        return ((queries is None or watch["blocking_queries"] == queries)
                and (streams is None or watch["streams"] == streams))
    wait_until(held, 30, f"{queries} blocking queries and {streams} streams to be held")


def put(cluster, key, value):
    status, body = cluster.http("PUT", f"/kv/{key}", body=value.encode())
    assert status == 200, body
    return body


def get_with_index(cluster, path, timeout_s=30):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read())
        return response.status, body, int(response.getheader("X-Kv-Index"))
    finally:
        conn.close()


def test_every_write_gets_the_next_index_and_reads_report_it(cluster):
    first = put(cluster, "w/a", "1")
    second = put(cluster, "w/b", "2")
    assert second["index"] == first["index"] + 1
    status, body = cluster.http("POST", "/txn", body=json.dumps({
        "compare": [], "success": [{"op": "put", "key": "w/c", "value": "3"}, {"op": "del", "key": "w/a"}]}))
    assert status == 200 and body["index"] == second["index"] + 1, body
    # A read reports the newest index, found or not.
    assert get_with_index(cluster, "/kv/w/b")[2] == body["index"]
    assert get_with_index(cluster, "/kv?prefix=w/")[2] == body["index"]
    status, _, index = get_with_index(cluster, "/kv/w/a")
    assert status == 404 and index == body["index"]
    # A blocking query that times out gives back the index it waited from (w/b has not changed since).
    assert get_with_index(cluster, f"/kv/w/b?index={second['index']}&wait=100ms")[2] == second["index"]
    # One that is answered at once gives the newest change in its scope.
    assert get_with_index(cluster, f"/kv/w/a?index={first['index']}&wait=10s")[2] == body["index"]


def test_a_blocking_query_answers_on_a_change_and_on_time_out(cluster):
    put(cluster, "b/k", "old")
    _, body, index = get_with_index(cluster, "/kv/b/k")
    assert body["message"] == "old"
    # Time-out: the unchanged state and the same index, after the wait.
    started = time.monotonic()
    status, body, again = get_with_index(cluster, f"/kv/b/k?index={index}&wait=1s")
    assert time.monotonic() - started >= 0.9
    assert (status, body["message"], again) == (200, "old", index)
    # A change to another key does not wake it; one to the key does, with the new state and index.
    result = {}

    def wait():
        result["answer"] = get_with_index(cluster, f"/kv/b/k?index={index}&wait=60s")
    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_watchers(cluster, queries=1)
    put(cluster, "b/other", "x")
    assert status_watch(cluster)["blocking_queries"] == 1, "a change outside the scope wakes nobody"
    written = put(cluster, "b/k", "new")
    waiter.join(30)
    assert not waiter.is_alive()
    status, body, after = result["answer"]
    assert (status, body["message"], after) == (200, "new", written["index"])
    # An index older than the key's newest change answers at once.
    started = time.monotonic()
    assert get_with_index(cluster, f"/kv/b/k?index={index}&wait=60s")[1]["message"] == "new"
    assert time.monotonic() - started < 5


def test_a_blocking_list_wakes_on_a_change_under_its_prefix(cluster):
    put(cluster, "l/1", "a")
    _, _, index = get_with_index(cluster, "/kv?prefix=l/")
    result = {}
    waiter = threading.Thread(target=lambda: result.update(answer=get_with_index(
        cluster, f"/kv?prefix=l/&index={index}&wait=60s")))
    waiter.start()
    wait_watchers(cluster, queries=1)
    put(cluster, "l/2", "b")
    waiter.join(30)
    status, body, after = result["answer"]
    assert status == 200 and [kv["key"] for kv in body["kvs"]] == ["l/1", "l/2"] and after > index


def test_bad_waits_are_refused(cluster):
    assert cluster.http("GET", "/kv/k?index=x")[0] == 400
    assert cluster.http("GET", "/kv/k?index=1&wait=soon")[0] == 400
    assert cluster.http("GET", "/watch")[0] == 400
    assert cluster.http("GET", "/watch?key=a&prefix=b")[0] == 400
    assert cluster.http("GET", "/watch?prefix=&from=banana")[0] == 400
    status, body = cluster.http("GET", "/watch?prefix=&from=999999")
    assert status == 400 and "newest index" in body["message"]


def test_a_stream_delivers_every_change_in_order_and_resumes_exactly(cluster):
    stream = EventStream(cluster.http_port, "/watch?prefix=s/")
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    start = stream.wait_ready()["id"]
    put(cluster, "s/a", "1")
    put(cluster, "other", "not seen")
    status, _ = cluster.http("DELETE", "/kv/s/a")
    assert status == 200
    put(cluster, "s/b", "\u00e9")
    events = stream.changes(3)
    assert [(e["event"], e["data"]["key"]) for e in events] == [("put", "s/a"), ("delete", "s/a"), ("put", "s/b")]
    assert events[0]["data"]["value"] == "1" and events[2]["data"]["value"] == "\u00e9"
    assert events[0]["id"] > start and [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["data"]["created"] == events[0]["data"]["version"], "a new key is created by its put"
    assert events[1]["data"]["created"] == events[0]["data"]["created"]
    stream.close()
    # Changes while no one watched, then a resume after the last one seen: each exactly once, in order.
    for i in range(5):
        put(cluster, f"s/r{i}", str(i))
    resumed = EventStream(cluster.http_port, "/watch?prefix=s/", headers={"Last-Event-ID": str(events[1]["id"])})
    replay = resumed.changes(6)
    assert [e["data"]["key"] for e in replay] == ["s/b"] + [f"s/r{i}" for i in range(5)]
    assert resumed.wait_ready()["id"] >= replay[-1]["id"]
    put(cluster, "s/live", "x")
    assert resumed.changes(1)[0]["data"]["key"] == "s/live"
    resumed.close()
    # ?from= is the same resume point.
    again = EventStream(cluster.http_port, f"/watch?key=s/b&from={start}")
    assert [e["data"]["key"] for e in again.changes(1)] == ["s/b"]
    again.close()


def test_a_value_at_the_size_limit_is_delivered(tmp_path):
    with running_cluster(tmp_path, limits={"value_bytes_max": 65536}) as cluster:
        stream = EventStream(cluster.http_port, "/watch?key=big")
        stream.wait_ready()
        value = "v" * 65536
        put(cluster, "big", value)
        assert stream.changes(1)[0]["data"]["value"] == value
        stream.close()


def test_a_transaction_is_one_index_with_every_change(cluster):
    stream = EventStream(cluster.http_port, "/watch?prefix=t/")
    stream.wait_ready()
    status, body = cluster.http("POST", "/txn", body=json.dumps({
        "compare": [], "success": [{"op": "put", "key": "t/1", "value": "a"}, {"op": "put", "key": "t/2", "value": "b"},
                                   {"op": "del", "key": "t/absent"}]}))
    assert status == 200
    first, second = stream.changes(2)
    assert first["data"]["index"] == second["data"]["index"] == body["index"]
    # The id comes with the last change of the index: a client cut off in between resumes before it.
    assert first["id"] is None and second["id"] == body["index"]
    stream.close()


def test_resume_after_compaction_says_where_to_start(tmp_path):
    with running_cluster(tmp_path, watch={"history_max": 5}) as cluster:
        first = put(cluster, "c/0", "0")["index"]
        for i in range(1, 20):
            put(cluster, f"c/{i}", str(i))
        status, body = cluster.http("GET", f"/watch?prefix=c/&from={first}")
        assert status == 410, body
        assert body["message"].startswith("compacted:") and f"watch from index {body['index']}" in body["message"]
        # Re-read, then watch from the index the answer gave: nothing is missed from there on.
        stream = EventStream(cluster.http_port, f"/watch?prefix=c/&from={body['index']}")
        stream.wait_ready()
        put(cluster, "c/after", "x")
        assert stream.changes(1)[0]["data"]["key"] == "c/after"
        stream.close()


def test_a_stream_resumes_across_a_master_restart_and_a_replica_failure(tmp_path):
    with running_cluster(tmp_path, storage={"snapshot_log_bytes_max": 4096}) as cluster:
        stream = EventStream(cluster.http_port, "/watch?prefix=m/")
        stream.wait_ready()
        written = [put(cluster, f"m/{i}", "x" * 100)["index"] for i in range(30)]  # the decision log compacts
        seen = [e["id"] for e in stream.changes(10)]
        cluster.kill_master()
        # What was on its way still arrives; then the stream ends with the master.
        while (event := stream.next_event()) is not None:
            seen.append(event["id"])
        stream.close()
        assert seen == written[:len(seen)]
        cluster.start_master()
        cluster.wait_cluster_ready()
        cluster.kill_replica("r2")
        for i in range(30, 35):
            assert cluster.http("PUT", f"/kv/m/{i}", body="y")[0] == 503, "a replica is down: writes fail"
        cluster.start_replica("r2")
        cluster.wait_cluster_ready()
        written += [put(cluster, f"m/{i}", "z")["index"] for i in range(35, 40)]
        resumed = EventStream(cluster.http_port, "/watch?prefix=m/", headers={"Last-Event-ID": str(seen[-1])})
        rest = [e["id"] for e in resumed.changes(len(written) - len(seen))]
        assert seen + rest == written, "every acknowledged change once, in index order"
        resumed.close()


def test_heartbeats_keep_an_idle_stream_alive(tmp_path):
    with running_cluster(tmp_path, watch={"heartbeat_ms": 200}) as cluster:
        stream = EventStream(cluster.http_port, "/watch?prefix=idle/")
        stream.wait_ready()
        started = time.monotonic()
        assert stream.wait_comments(3)
        assert time.monotonic() - started < 10
        stream.close()
        # A stream whose client went away is found by its next heartbeat and let go.
        wait_watchers(cluster, streams=0)


def test_many_waiters_are_held_by_a_few_worker_threads(tmp_path):
    with running_cluster(tmp_path, worker_threads=4, watch={"watchers_max": 350}) as cluster:
        keys = [f"many/{i}" for i in range(200)]
        results = {}

        def wait(key):
            results[key] = get_with_index(cluster, f"/kv/{key}?index=0&wait=120s", timeout_s=150)
        # index=0 on an absent key: its newest change is before the history began, so it waits.
        put(cluster, "many/seed", "s")
        base = cluster.http("GET", "/status")[1]["index"]
        threads = [threading.Thread(target=wait, args=(k,)) for k in keys]
        for thread in threads:
            thread.start()
        streams = [EventStream(cluster.http_port, f"/watch?key={k}", timeout_s=60) for k in keys[:150]]
        for stream in streams:
            stream.wait_ready()
        wait_watchers(cluster, queries=200, streams=150)
        # Past watchers_max: 503 at once.
        status, body = cluster.http("GET", "/watch?prefix=full")
        assert status == 503 and "watchers_max" in body["message"], body
        # Writes still go through while 350 requests wait on 4 workers.
        for key in keys:
            put(cluster, key, "v")
        for thread in threads:
            thread.join(60)
        assert all(results[k][0] == 200 and results[k][1]["message"] == "v" and results[k][2] > base for k in keys)
        for key, stream in zip(keys, streams):
            assert stream.changes(1)[0]["data"]["key"] == key
            stream.close()


def test_answered_waiters_leave_no_dead_connection_behind(cluster):
    """A parked request's connection is closed once it is answered; nginx must not have kept it for the next
    request (502 'upstream prematurely closed connection'). index=0 included: nginx's if() takes "0" for false."""
    for round in range(3):
        keys = [f"dead/{round}/{i}" for i in range(100)]  # never written: index=0 waits
        results = {}
        waiters = [threading.Thread(target=lambda k=k: results.update({k: get_with_index(
            cluster, f"/kv/{k}?index=0&wait=30s")})) for k in keys]
        for waiter in waiters:
            waiter.start()
        wait_watchers(cluster, queries=100)
        statuses = []

        def write(part):
            for key in keys[part::8]:
                statuses.append(cluster.http("PUT", f"/kv/{key}", body=b"v")[0])
                statuses.append(cluster.http("GET", "/kv/dead/none")[0])
        writers = [threading.Thread(target=write, args=(part,)) for part in range(8)]
        for thread in writers + waiters:
            thread.start() if thread in writers else None
        for thread in writers + waiters:
            thread.join(60)
        assert sorted(set(statuses)) == [200, 404], statuses
        assert all(results[k][0] == 200 for k in keys)


def test_tokens_scope_watchers(tmp_path):
    def prepare(c):
        c.reader = c.add_token("app", "read-write", prefixes=["app/"])
    with running_cluster(tmp_path, tokens=True, prepare=prepare) as cluster:
        headers = {"Authorization": f"Bearer {cluster.reader}"}
        denied = EventStream(cluster.http_port, "/watch?prefix=", headers=headers)
        assert denied.status == 403
        denied.close()
        assert EventStream(cluster.http_port, "/watch?prefix=app/").status == 401
        allowed = EventStream(cluster.http_port, "/watch?prefix=app/", headers=headers)
        assert allowed.status == 200
        allowed.close()
        assert cluster.http("GET", "/kv/secret?index=1&wait=1s", headers=headers)[0] == 403
