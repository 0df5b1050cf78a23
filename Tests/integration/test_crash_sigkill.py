"""SIGKILL a random process (a replica or the master) at a random moment under concurrent writes, many rounds
on one cluster; after each restart the cluster must converge with every acknowledged write, nothing aborted
applied, undecided writes identical everywhere, and no key left locked. Beside the writers of fresh keys,
contended ones (crash_helpers.ContendedWriters): compare-and-swap increments of one counter from two threads, and
two-key transactions, whose results must stay exact (no increment lost or applied twice, no pair half-written).

Seeded: KV_CRASH_SEED (default below) picks the victims and moments; the seed is printed and in every failure.
"""
import os
import random
import time

import pytest

from crash_helpers import (ACK, ContendedWriters, check_identical, check_ledger, fresh_puts, kill, make_cluster,
                           restart, start_cluster, wait_healthy, Ledger, Writers)
from kvcluster import wait_until

ROUNDS = 10
DEFAULT_SEED = 20250611


@pytest.fixture
def crash_cluster(tmp_path):
    c = make_cluster(tmp_path)
    print(f"cluster run dir: {c.run_dir}")
    try:
        start_cluster(c)
        yield c
    finally:
        c.kill_all()


def test_sigkill_random_process_at_random_moments(crash_cluster):
    c = crash_cluster
    seed = int(os.environ.get("KV_CRASH_SEED", DEFAULT_SEED))
    rng = random.Random(seed)
    checked = 0
    victims = []
    for round_no in range(ROUNDS):
        victim = rng.choice(c.replica_ids + ["master"])
        kill_after_ops = rng.randint(3, 60)
        jitter_s = rng.uniform(0, 0.02)
        where = f"seed {seed} round {round_no}: SIGKILL {victim} after {kill_after_ops} ops (+{jitter_s * 1000:.1f} ms)"
        victims.append(victim)
        ledger = Ledger(f"s{round_no}")
        writers = Writers(c, ledger, threads=5, max_ops=150, seed=seed + round_no).start()
        contended = ContendedWriters(c, f"c{round_no}").start()
        try:
            wait_until(lambda: ledger.count() >= kill_after_ops or writers.finished(), 30, "writes in progress")
            assert not writers.finished(), f"{where}: writers ended before the kill: {writers.errors}"
            time.sleep(jitter_s)  # a random moment inside the stream of writes, not a readiness wait
            kill(c, victim)
            assert not c.is_running(victim)
            restart(c, victim)
            # Writes resume: 15 more acknowledged (or the writers ran out of operations; fresh_puts below then
            # shows writes work). Not getting there fails the round rather than being waited out.
            resumed = ledger.acked() + 15
            wait_until(lambda: ledger.acked() >= resumed or writers.finished(), 60,
                       f"{where}: 15 writes acknowledged after the restart ({ledger.summary()})")
        finally:
            writers.stop()
            contended.stop()
        try:
            wait_healthy(c)
            checked += check_ledger(c, ledger)
            contention = contended.check()
            check_identical(c)
            fresh_puts(c, list(ledger.by_key()), tag=f"s{round_no}")
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}\n(logs in {c.run_dir}/logs)") from None
        acked = sum(1 for op in ledger.snapshot() if op.outcome == ACK)
        assert acked > 0, f"{where}: no write was acknowledged in this round: {ledger.summary()}"
        print(f"{where}: {ledger.summary()}; {contention}")
    final = check_identical(c)
    print(f"seed {seed}: {ROUNDS} rounds (victims {', '.join(victims)}), {checked} writes checked; "
          f"replicas end at {final['r1']['keys']} keys, digest {final['r1']['digest']}")
