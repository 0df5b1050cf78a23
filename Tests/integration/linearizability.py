"""A linearizability checker for key-value histories, in the spirit of Knossos and Porcupine.

A history is a list of `Operation`s from many clients, each with an invocation time, a completion time and an
outcome: OK (with its output), FAIL (certainly did not take effect: dropped) or UNKNOWN (timeout, connection
error, 502/504: it may take effect at any moment after its invocation, or never; its completion time is
+infinity and its output is unconstrained). Failed or unknown reads say nothing and are dropped.

Model: one register per key (P-compositionality: a history is linearizable iff every key's sub-history is);
the state is the value, or None when absent. The search does not need values to be unique per write, but the
version handling below does (our clients make every written value unique).
  put(key, value)                   -> nothing
  get(key)                          -> the value, or None (our 404)
  delete(key)                       -> existed? (False is our 404 on DELETE; the state becomes None either way)
  cas(key, expected, new)           -> True iff state == expected (then state = new); expected None = "absent"
CAS on versions: our version of a key is the seq of its last write, assigned by the server. Since every write
has a unique value and a unique seq, "version == s" is the same predicate as "value == the value written by
seq s"; a CAS made with `by_version=True` is translated through the seq <-> value pairs seen in OK responses
(put answers, get answers); version 0 means absent. A CAS naming a version no response reported is refused
(ValueError) rather than guessed. The same pairs are checked for consistency: one value reported with two
seqs, or one seq with two values, is a violation in itself.

Search (linearizability_search.py): Wing & Gong / Lowe with Porcupine's structure: call/return entries sorted
by time (calls first on ties, so touching operations count as concurrent) in a doubly linked list; linearizing
a call lifts it and its return out of the list; reaching a return whose call is not linearized backtracks; a
cache of visited (linearized-bitset, state) pairs prunes repeats; unknown-outcome ops are kept aside and
interchangeable ones are tried in one order only. It finds a linearization greedily when one exists, but
refuting a late violation means exhausting every earlier configuration, so past a tenth of its step budget the
key goes to a sweep (Lowe's just-in-time linearization: the set of configurations carried through the events in
time order), whose work grows with the concurrency rather than the length of the history. Both are bounded by
steps and time: past either, the verdict is None, "unknown (budget exceeded)", never a hang and never a guess. Sound reductions before searching:
values no get or CAS ever compares against are folded into one token (the model cannot tell them apart), and
an UNKNOWN put of such a value is dropped when no delete answered "existed" and no CAS answered False or
unknown after its invocation (it can then only make other operations harder to explain, and it may always be
placed last).
A violation is explained by the shortest prefix of the key's history (cut at a completion; operations in
flight at the cut count as unknown) that is not linearizable, shrunk greedily while it stays so.

    h = History(); op = h.invoke("c1", PUT, "k", value="v1"); ...; h.ok(op)   # or h.fail(op) / h.unknown(op)
    result = check(h); assert result.linearizable is True, str(result); print(result.ops_checked)
"""
import threading
import time

from linearizability_search import _ANY, INF, _Budget, _decide, _explain, _Op

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
PUT, GET, DELETE, CAS = "put", "get", "delete", "cas"
_UNOBSERVED = ("<a value nobody reads>",)


class Operation:
    __slots__ = ("client", "kind", "key", "value", "expected", "by_version", "output", "outcome", "call", "ret",
                 "seq")

    def __init__(self, client, kind, key, value=None, expected=None, by_version=False, call=None):
        self.client, self.kind, self.key, self.value = client, kind, key, value
        self.expected, self.by_version = expected, by_version
        self.call = time.monotonic() if call is None else call
        self.output = self.outcome = self.seq = None
        self.ret = INF

    def describe(self, t0=0.0):
        args = {PUT: f", {self.value!r}", GET: "", DELETE: "",
                CAS: f", {'version ' if self.by_version else ''}{self.expected!r} -> {self.value!r}"}[self.kind]
        out = {OK: f"ok {self.output!r}" if self.kind != PUT else "ok", FAIL: "fail", UNKNOWN: "unknown"}.get(
            self.outcome, "pending")
        seq = f" seq {self.seq}" if self.seq is not None else ""
        end = "inf" if self.ret == INF else f"{self.ret - t0:.4f}"
        return f"[{self.call - t0:.4f}, {end}] {self.client}: {self.kind}({self.key!r}{args}) -> {out}{seq}"

    __repr__ = describe


class History:
    """Thread-safe recorder: `op = h.invoke(...)`, then `h.ok(op, output)`, `h.fail(op)` or `h.unknown(op)`.
    `h.add(...)` records a finished operation with explicit times (for hand-written histories)."""

    def __init__(self):
        self.ops, self._lock = [], threading.Lock()

    def invoke(self, client, kind, key, value=None, expected=None, by_version=False, at=None):
        op = Operation(client, kind, key, value, expected, by_version, at)
        with self._lock:
            self.ops.append(op)
        return op

    def _finish(self, op, outcome, output, seq, at):
        op.outcome, op.output, op.seq = outcome, output, seq
        op.ret = INF if outcome == UNKNOWN else (time.monotonic() if at is None else at)

    def ok(self, op, output=None, seq=None, at=None):
        self._finish(op, OK, output, seq, at)

    def fail(self, op, at=None):
        self._finish(op, FAIL, None, None, at)

    def unknown(self, op):
        self._finish(op, UNKNOWN, None, None, None)

    def add(self, client, kind, key, call, ret, outcome=OK, output=None, value=None, expected=None, seq=None,
            by_version=False):
        op = self.invoke(client, kind, key, value, expected, by_version, at=call)
        self._finish(op, outcome, output, seq, ret)
        return op


class CheckResult:
    """linearizable: True, False (a violation, see key/message/explanation) or None (budget exceeded)."""

    def __init__(self):
        self.linearizable, self.reason, self.key, self.message = True, "", None, ""
        self.explanation, self.per_key = [], {}
        self.ops_total = self.ops_checked = self.keys = 0
        self.elapsed_s = 0.0

    def __str__(self):
        verdict = {True: "linearizable", False: "NOT linearizable", None: "unknown (budget exceeded)"}
        text = (f"{verdict[self.linearizable]}: {self.ops_checked} of {self.ops_total} operations checked over "
                f"{self.keys} keys in {self.elapsed_s:.2f}s")
        if self.linearizable is not True:
            text += f"\n{self.reason}"
        if self.explanation:
            t0 = min(op.call for op in self.explanation)
            text += f"\nkey {self.key!r}: {self.message}\n" + "\n".join(
                "  " + op.describe(t0) for op in self.explanation)
        return text


def _version_problems(ops):
    """The seq <-> value pairs of a key: (value->seq map, seq->value map, conflicting op pair or None)."""
    by_value, by_seq, first = {}, {}, {}
    for op in ops:
        if op.outcome != OK or op.seq is None or op.kind not in (PUT, GET, CAS):
            continue
        value = op.output if op.kind == GET else op.value
        if value is None or (op.kind == CAS and op.output is not True):
            continue
        for table, k, v in ((by_value, value, op.seq), (by_seq, op.seq, value)):
            if table.setdefault(k, v) != v:
                return by_value, by_seq, (first[(id(table), k)], op)
            first.setdefault((id(table), k), op)
    return by_value, by_seq, None


def _prepare(ops):
    """Returns (search ops, version conflict or None) for one key's operations."""
    # FAIL: never took effect. Pending (no outcome recorded) counts as UNKNOWN. Reads without an answer: dropped.
    ops = [op for op in ops if op.outcome != FAIL and not (op.kind == GET and op.outcome != OK)]
    _, by_seq, conflict = _version_problems(ops)
    expected = {}
    for op in ops:
        if op.kind == CAS:
            if not op.by_version:
                expected[id(op)] = op.expected
            elif op.expected == 0:
                expected[id(op)] = None
            elif op.expected in by_seq:
                expected[id(op)] = by_seq[op.expected]
            else:
                raise ValueError(f"CAS on version {op.expected} that no response reported: {op.describe()}")
    observed = {op.output for op in ops if op.kind == GET} | set(expected.values())
    observed.discard(None)
    # Latest completion of an op a hidden put could help explain ("existed", or a CAS that did not match).
    last_explainer_ret = max([o.ret for o in ops if (o.kind == DELETE and o.outcome == OK and o.output is True)
                              or (o.kind == CAS and (o.outcome != OK or o.output is not True))], default=-INF)
    out = []
    fold = (lambda v: v if v in observed else _UNOBSERVED)
    for op in ops:
        if op.kind == PUT and op.outcome != OK and op.value not in observed and last_explainer_ret < op.call:
            continue  # can only make others harder to explain; may always be placed last
        res = op.output if op.outcome == OK else _ANY
        if op.kind == PUT:
            out.append(_Op(0, fold(op.value), None, None, op.call, op.ret, op))
        elif op.kind == GET:
            out.append(_Op(1, None, None, res, op.call, op.ret, op))
        elif op.kind == DELETE:
            out.append(_Op(2, None, None, res, op.call, op.ret, op))
        else:
            out.append(_Op(3, expected[id(op)], fold(op.value), res, op.call, op.ret, op))
    return out, conflict


def check(history, time_budget_s=60.0, max_steps=5_000_000, explain=True, explain_budget_s=10.0):
    """Checks a History (or a list of Operations) key by key; returns a CheckResult."""
    started = time.monotonic()
    deadline = started + time_budget_s
    ops = history.ops if isinstance(history, History) else list(history)
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    result = CheckResult()
    result.ops_total, result.keys = len(ops), len(by_key)
    unknown = []
    for key in sorted(by_key, key=repr):
        prepared, conflict = _prepare(by_key[key])
        result.ops_checked += len(prepared)
        if conflict:
            verdict, why = False, f"key {key!r}: one value reported with two seqs, or one seq with two values"
        else:
            try:
                verdict, why = _decide(prepared, deadline, max_steps), ""
            except _Budget as exc:
                verdict, why = None, f"key {key!r}: budget exceeded ({exc}; {len(prepared)} ops)"
        result.per_key[key] = verdict
        if verdict is None:
            unknown.append(why)
        elif verdict is False and result.linearizable is not False:
            result.linearizable, result.key = False, key
            result.reason = why or f"key {key!r}: no linearization of its {len(prepared)} operations"
            if conflict:
                result.explanation, result.message = list(conflict), "these answers disagree on a version"
            elif explain:
                end = min(time.monotonic() + explain_budget_s, deadline + explain_budget_s)
                culprits, result.explanation = _explain(prepared, end, max_steps)
                t0 = min(op.call for op in result.explanation)
                result.message = ("no linearization once " + "; ".join(op.describe(t0) for op in culprits)
                                  + " completed, given these operations (those still running then count as "
                                  "unknown):" if culprits else "no linearization of these operations:")
    if result.linearizable is True and unknown:
        result.linearizable, result.reason = None, "unknown (budget exceeded): " + "; ".join(unknown)
    result.elapsed_s = time.monotonic() - started
    return result
