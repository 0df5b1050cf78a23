"""A log fsync that fails (EIO, injected with the `log-fsync-eio` error point) stops the process with exit 74
(EX_IOERR) before anything it could not make durable is acknowledged: after a restart without the fault, every
write acknowledged before it is on every replica, and the cluster takes writes again."""
import pytest

from crash_helpers import (ACK, UNKNOWN, check_identical, check_ledger, exit_code, fresh_puts, log_tail,
                           restart, start_cluster, wait_healthy, Ledger, Op)


@pytest.mark.parametrize("victim", ["r2", "master"])
def test_a_failed_log_fsync_stops_the_process_with_74_and_loses_nothing(unstarted_cluster, victim):
    c = unstarted_cluster
    start_cluster(c, env_for={victim: {"KV_FAILPOINTS": "log-fsync-eio@40"}})
    ledger = Ledger("eio")
    for n in range(400):
        op = Op("put", f"eio-{n}", f"eio:value:{n}")
        try:
            status, body = c.http("PUT", "/kv/" + op.key, body=op.value.encode(), timeout_s=15)
        except OSError as exc:
            status, body = None, {"message": repr(exc)}
        op.status, op.seq, op.detail = status, body.get("seq"), body.get("message")
        # 200: acknowledged. 503 naming the replica: nothing written. 502 from nginx (the master went away
        # mid-request) or no answer: unknown. Nothing else may happen.
        op.outcome = ACK if status == 200 else "aborted" if status in (409, 503) else UNKNOWN
        assert status in (200, 409, 502, 503, None), (status, body)
        ledger.add(op)
        if not c.is_running(victim):
            break
    assert not c.is_running(victim), f"the error point never fired on {victim} ({ledger.summary()})"
    assert exit_code(c, victim) == 74, f"{victim} exited with {exit_code(c, victim)}:\n{log_tail(c, victim)}"
    log = c.log(victim)
    assert "log write failed" in log and "fdatasync" in log and "Input/output error" in log, log[-2000:]
    acked = sum(1 for op in ledger.snapshot() if op.outcome == ACK)
    assert acked >= 5, f"too little traffic before the fault: {ledger.summary()}"

    restart(c, victim)
    wait_healthy(c)
    checked = check_ledger(c, ledger)
    check_identical(c)
    fresh_puts(c, [op.key for op in ledger.snapshot()][:20], tag="after-eio")
    print(f"{victim}: exit 74 after {acked} acknowledged writes; {checked} writes checked")
