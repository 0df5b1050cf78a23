"""The master's query port (`master.query_listen`), as a replica in doubt uses it: `qry` answers committed for a
committed seq, aborted for one it issued and never committed (presumed abort), and unknown_transaction for seqs
it cannot judge (above the last it issued, or below the first of its decision log); only the replica role may
ask."""
import pytest

from helpers import ask_master as ask
from kvwire import AuthError


def test_qry_answers_what_the_decision_log_knows_and_unknown_transaction_for_the_rest(cluster):
    status, body = cluster.http("PUT", "/kv/q", body=b"1")
    assert status == 200
    committed = body["seq"]
    status, body = cluster.http("DELETE", "/kv/never-there")
    assert status == 404
    aborted = body["seq"]
    assert aborted > committed
    answers = ask(cluster, f"{committed};qry;;", f"{aborted};qry;;", f"{aborted + 1000};qry;;", "1;qry;;")
    assert [(a["status"], a["code"]) for a in answers] == [
        (True, "committed"), (True, "aborted"), (False, "unknown_transaction"), (False, "unknown_transaction")], answers
    assert all(a["server"] == "m1" for a in answers)
    for unknown in answers[2:]:
        assert "decision log does not cover" in unknown["message"] and "ask the participants" in unknown["message"], \
            unknown


def test_the_query_port_refuses_roles_other_than_replica(cluster):
    with pytest.raises(AuthError, match="role operator may not use this port"):
        ask(cluster, "1;qry;;", role="operator")
