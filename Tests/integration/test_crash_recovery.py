"""Crash at every named failpoint under concurrent writes, restart, and check that recovery keeps every
acknowledged write, applies nothing the client saw aborted, leaves undecided writes identical everywhere,
converges all replicas to the same content and leaves no key locked."""
import re

import pytest

from crash_helpers import (ACK, UNKNOWN, check_identical, check_ledger, exit_code, fresh_puts, log_tail,
                           read_replica, restart, start_cluster, wait_healthy, Ledger, Writers)
from kvcluster import wait_until

# The process each failpoint crashes: the master's points on the master, replica points on r2 (for
# master-mid-commit-send the master itself picks the first replica, r1, as the one that gets the commit).
POINTS = {
    "replica-before-prepare-fsync": "r2",
    "replica-after-prepare-fsync": "r2",
    "replica-after-vote": "r2",
    "replica-after-commit": "r2",
    "master-after-votes": "master",
    "master-after-commit-fsync": "master",
    "master-mid-commit-send": "master",
}
HIT = 20  # let some traffic through first (the single-writer test)
HITS = [20, 75]  # crash early, and later under more concurrency


def check_recovery_evidence(point, victim, ledger, logs, cluster):
    """The crash left something for recovery to do, and recovery did it (logs written after the restart)."""
    everything = "\n".join(logs.values())
    if point in ("master-after-commit-fsync", "master-mid-commit-send"):
        # The crashing transaction's COMMIT was durable: the restarted master re-sends it, and the write the
        # client never heard about (502) is applied everywhere.
        assert "re-sending commit" in logs["master"], logs["master"][-2000:]
        unknown = [ops for ops in ledger.by_key().values() if ops[-1].outcome == UNKNOWN]
        applied = [ops for ops in unknown if applied_everywhere(cluster, ops[-1])]
        assert applied, f"no write with an unknown outcome was applied, yet one had a durable COMMIT: {unknown}"
    elif point == "master-after-votes":
        # Every replica had prepared the crashing transaction: it was in doubt and resolved (presumed abort).
        assert "in-doubt" in everything, everything[-3000:]
    elif point in ("replica-after-prepare-fsync", "replica-after-vote"):
        # The crashed replica replayed a durable PREPARE without a decision and resolved it.
        m = re.search(r"(\d+) in doubt", logs[victim])
        assert m and int(m.group(1)) >= 1, logs[victim][-2000:]
        assert "in-doubt" in everything, everything[-3000:]


def applied_everywhere(cluster, op):
    views = [read_replica(cluster, rid, [op.key.encode()])[op.key.encode()] for rid in cluster.replica_ids]
    if op.kind == "put":
        return all(v is not None and v[0] == op.value for v in views)
    return all(v is None for v in views)


@pytest.mark.parametrize("hit", HITS)
@pytest.mark.parametrize("point", sorted(POINTS))
def test_failpoint_crash_under_load_recovers_consistently(unstarted_cluster, point, hit):
    c = unstarted_cluster
    victim = POINTS[point]
    start_cluster(c, env_for={victim: {"KV_FAILPOINTS": f"{point}@{hit}"}})
    ledger = Ledger("fp")
    writers = Writers(c, ledger, threads=4 if hit < 50 else 8, max_ops=150, seed=hit).start()
    try:
        wait_until(lambda: not c.is_running(victim) or writers.finished(), 60, f"{victim} to hit {point}")
    except TimeoutError:
        pass
    assert not c.is_running(victim), (f"failpoint {point}@{hit} never fired on {victim} "
                                      f"({ledger.summary()})")
    code = exit_code(c, victim)
    crash_log = c.log(victim)
    assert code == 99, f"{victim} exited with {code}, not the failpoint's 99; log:\n{log_tail(c, victim)}"
    assert "failpoint" in crash_log and point in crash_log, crash_log[-2000:]
    acked_before_crash = sum(1 for op in ledger.snapshot() if op.outcome == ACK)
    assert acked_before_crash >= 5, f"too little traffic before the crash: {ledger.summary()}"

    # Writers keep going while the crashed process restarts (without failpoints), and a little after.
    logs_before = {name: len(c.log(name)) for name in ["master"] + c.replica_ids}
    restart(c, victim)
    # Writes resume: 20 more are acknowledged (unless the writers ran out of operations first; fresh_puts below
    # then shows writes work). Not reaching that is a failure, not something to wait out.
    acked_at_restart = ledger.acked()
    wait_until(lambda: ledger.acked() >= acked_at_restart + 20 or writers.finished(), 60,
               f"20 writes acknowledged after {victim} restarted ({ledger.summary()})")
    writers.stop()
    wait_healthy(c)

    checked = check_ledger(c, ledger)
    stats = check_identical(c)
    after = {name: c.log(name)[start:] for name, start in logs_before.items()}
    check_recovery_evidence(point, victim, ledger, after, c)
    keys = list(ledger.by_key())
    fresh_puts(c, keys, tag=point)
    print(f"{point}@{hit}: {checked} writes checked ({ledger.summary()}); replicas at {stats['r1']['keys']} keys")


@pytest.mark.parametrize("links", ["tcp", "tls"])
@pytest.mark.parametrize("point", ["master-mid-commit-send", "master-after-votes"])
def test_master_stays_down_replicas_resolve_among_themselves(request, point, links):
    """One writer, so the crashing transaction is the only one in flight. With the master down longer than
    the coordinator's time limits the replicas' resolvers act alone: after master-mid-commit-send r1 holds the
    commit, so r2 and r3 learn it from their peer and commit without the master; after master-after-votes no
    one knows the outcome, so every replica keeps the key locked and reports the seq blocked until the master
    is back and resolves it (presumed abort: it has no COMMIT record). With links "tls", every question a
    replica asks (a peer, then the master's query_listen) goes through mutual TLS."""
    c = request.getfixturevalue("unstarted_cluster" if links == "tcp" else "unstarted_tls_cluster")
    start_cluster(c, env_for={"master": {"KV_FAILPOINTS": f"{point}@{HIT}"}})
    ledger = Ledger("down")
    writers = Writers(c, ledger, threads=1, max_ops=60, seed=7).start()
    try:
        wait_until(lambda: not c.is_running("master") or writers.finished(), 60, f"the master to hit {point}")
    except TimeoutError:
        pass
    writers.stop()
    assert not c.is_running("master") and exit_code(c, "master") == 99, ledger.summary()
    assert "failpoint" in c.log("master")
    ops = ledger.snapshot()
    crashed = next(op for op in ops if op.outcome == UNKNOWN)  # the write in flight when the master died
    assert all(op.outcome in (ACK, UNKNOWN) for op in ops), ledger.summary()

    def stats():
        return {rid: c.stat(rid) for rid in c.replica_ids}

    if point == "master-mid-commit-send":
        def resolved_by_peers():
            return all(s["in_doubt"] == [] for s in stats().values())
        try:
            wait_until(resolved_by_peers, 20, "r2 and r3 to learn the commit from r1")
        except TimeoutError:
            raise AssertionError(f"in doubt with the master down although r1 committed: {stats()}") from None
        assert not c.is_running("master")
        assert applied_everywhere(c, crashed), f"{crashed} was committed on r1 but is not applied everywhere"
        assert "learned commit" in c.log("r2") + c.log("r3")
    else:
        def all_blocked():
            s = stats()
            return all(v["in_doubt"] and all(i["blocked"] for i in v["in_doubt"]) for v in s.values()) and s
        try:
            blocked = wait_until(all_blocked, 20, "every replica to report the undecided seq blocked")
        except TimeoutError:
            raise AssertionError(f"expected the undecided transaction blocked everywhere: {stats()}") from None
        seqs = {tuple(i["seq"] for i in v["in_doubt"]) for v in blocked.values()}
        assert len(seqs) == 1, blocked
        # The key stays locked: a read waits for the decision and times out instead of showing either value.
        reply = c.wire("r1", f";get;{crashed.key};")[0]
        assert reply["status"] is False and reply["code"] == "timeout", reply

    c.start_master()
    wait_healthy(c)
    check_ledger(c, ledger)
    check_identical(c)
    expected_applied = point == "master-mid-commit-send"
    assert applied_everywhere(c, crashed) == expected_applied, (crashed, point)
    fresh_puts(c, list(ledger.by_key()), tag=point)
