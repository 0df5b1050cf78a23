"""Small helpers shared by the integration tests."""
import contextlib
import os
import threading
import time

import kvcluster

REQUIRED_FIELDS = ("status", "message", "seq", "server")


def assert_kv_json(status, body):
    """Every answer is a JSON object with status, message, seq and server, and status matches HTTP."""
    assert isinstance(body, dict), f"HTTP {status}: body is not a JSON object: {body!r}"
    for field in REQUIRED_FIELDS:
        assert field in body, f"HTTP {status}: field {field!r} missing in {body}"
    assert isinstance(body["status"], bool)
    assert isinstance(body["message"], str) and body["message"], body
    assert body["seq"] is None or isinstance(body["seq"], int), body
    assert isinstance(body["server"], str) and body["server"], body
    assert body["status"] == (status == 200), f"HTTP {status} but status={body['status']}: {body}"


def replica_contents(cluster, rid, keys):
    """Reads `keys` directly from one replica over the wire protocol: key -> (value, seq) or None."""
    from kvcluster import wire_escape
    replies = cluster.wire(rid, *[b";get;" + wire_escape(k) + b";" for k in keys])
    out = {}
    for key, reply in zip(keys, replies):
        assert reply["server"] == rid
        if reply["status"]:
            out[key] = (reply["message"], reply["seq"])
        else:
            assert reply["code"] == "not_found", reply
            out[key] = None
    return out


def run_threads(count, target, duration_s, max_ops):
    """Runs `target(thread_index, stop)` on `count` threads, bounded in time and by `max_ops` per thread."""
    stop = threading.Event()
    errors = []

    def wrapper(i):
        try:
            target(i, stop, max_ops)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=wrapper, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + duration_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]


def exchange_until_close(sock, payload):
    """Sends `payload` on a connected socket (plain or TLS), as `nc` would; returns every byte until the server
    closes the connection (or resets it)."""
    sock.sendall(payload)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


@contextlib.contextmanager
def running_cluster(tmp_path, prepare=None, **generate):
    """A cluster generated under `tmp_path` (`Cluster.generate`'s options), started, and stopped by PID afterwards
    whatever happened. `prepare` runs on it before the start (tokens to add, settings of the harness)."""
    os.chmod(tmp_path, 0o755)  # nginx workers run as another user when not root; they need the logs
    cluster = kvcluster.Cluster.generate(str(tmp_path / "kv"), **generate)
    if prepare:
        prepare(cluster)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill_all()


def replica_address(cluster, rid):
    """(host, port) that replica `rid` is dialled at."""
    r = cluster.replica(rid)
    return r["host"], int(r["port"])


def ask_master(cluster, *lines, role="replica"):
    """Sends wire lines to the master's query port (`master.query_listen`) as a replica in doubt would."""
    from kvcluster import WireClient
    host, port = cluster.config["master"]["query_listen"].rsplit(":", 1)
    client = WireClient(host, int(port), key=cluster.wire_key(role), role=role, client_id="r1",
                        expected_server="m1", tls=cluster.link_tls_context())
    try:
        return client.call(*lines)
    finally:
        client.close()
