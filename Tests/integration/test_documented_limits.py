"""Documented limits and persisted settings, end to end: `limits.in_flight_transactions_max` answers 503 past
the limit (and the writes already in flight still finish), a wire request line over the replica's limit gets one
error line and the connection is closed, and the configuration epoch survives a master restart."""
import copy
import os
import signal
import threading

from helpers import replica_address, running_cluster
from kvcluster import WireClient, wait_until


def test_writes_past_in_flight_transactions_max_answer_503_and_those_in_flight_finish(tmp_path):
    with running_cluster(tmp_path, limits={"in_flight_transactions_max": 2},
                         timeouts={"prepare_timeout_ms": 4000}) as cluster:
        assert cluster.http("PUT", "/kv/warm", body=b"1")[0] == 200
        # A commit holds its slot until every replica acknowledged it (the answer comes before that).
        wait_until(lambda: cluster.http("GET", "/status")[1]["in_flight"] == 0, 10, "the warm-up write's acks")
        pid = cluster.procs["r2"].pid
        os.kill(pid, signal.SIGSTOP)  # r2 stops answering: prepares wait for it until the prepare time-out
        answers = {}
        try:
            def hold(key):
                answers[key] = cluster.http("PUT", f"/kv/{key}", body=b"v", timeout_s=30)
            holders = [threading.Thread(target=hold, args=(f"held{i}",), daemon=True) for i in range(2)]
            for t in holders:
                t.start()
            wait_until(lambda: cluster.http("GET", "/status")[1]["in_flight"] == 2, 10, "two writes in flight")
            status, body = cluster.http("PUT", "/kv/third", body=b"v")
            assert status == 503, (status, body)
            assert "too many transactions in flight (limit 2)" in body["message"], body
            assert body["status"] is False and body["server"] == "m1"
        finally:
            os.kill(pid, signal.SIGCONT)
        for t in holders:
            t.join(30)
        # Held past nothing but r2's silence, they finish: committed once r2 answers, or 503 at the time-out.
        assert {answers[k][0] for k in answers} <= {200, 503} and len(answers) == 2, answers
        # They freed their slots: once r2's link is back, writes go through again.
        wait_until(lambda: cluster.http("PUT", "/kv/third", body=b"v")[0] == 200, 30, "a write after the limit freed")
        assert cluster.http("GET", "/kv/third")[1]["message"] == "v"


def test_a_wire_line_over_the_limit_gets_one_error_line_and_the_connection_is_closed(tmp_path):
    # The replica's line limit follows from the key, value and txn limits: here 3 x (100 + 1000) + 64 = 3,364 bytes
    # (a txn of 1,000 bytes and 4 operations needs fewer).
    limits = {"key_bytes_max": 100, "value_bytes_max": 1000, "txn_bytes_max": 1000, "txn_ops_max": 4}
    with running_cluster(tmp_path, limits=limits) as cluster:
        host, port = replica_address(cluster, "r1")
        client = WireClient(host, port, key=cluster.wire_key("operator"), role="operator", client_id="test",
                            expected_server="r1", tls=cluster.link_tls_context())
        try:
            assert client.call(";stat;;")[0]["status"] is True
            client.file.write(b";get;" + b"k" * 4000 + b"\n")
            client.file.flush()
            reply = client.file.readline()
            assert b"line longer than 3364 bytes" in reply and b'"status":false' in reply, reply
            assert client.file.readline() == b"", "the connection is closed after the one error line"
        finally:
            client.close()
        # The replica is fine: a line at the limit's side of it is served.
        assert cluster.wire("r1", ";get;" + "k" * 100)[0]["code"] == "not_found"


def test_the_configuration_epoch_survives_a_master_restart(tmp_path):
    """Persisted, never reused: a start reads the file afresh and counts as accepting it, so the epoch after a
    restart is one above the last (not 1 again), and a reload after that moves on from there."""
    with running_cluster(tmp_path) as cluster:
        config = copy.deepcopy(cluster.config)
        config["limits"] = {"list_limit_max": 500}
        cluster.write_config(config)
        status, body = cluster.reload_master()
        assert status == 200, body
        epoch = cluster.http("GET", "/status")[1]["config_epoch"]
        assert epoch >= 2
        cluster.stop_master()
        cluster.start_master()
        cluster.wait_cluster_ready()
        status, body = cluster.http("GET", "/status")
        assert body["config_epoch"] == epoch + 1, body
        config["limits"] = {"list_limit_max": 600}
        cluster.write_config(config)
        assert cluster.reload_master()[0] == 200
        assert cluster.http("GET", "/status")[1]["config_epoch"] == epoch + 2
