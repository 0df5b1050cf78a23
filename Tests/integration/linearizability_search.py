"""The search behind linearizability.py: Wing & Gong / Lowe with Porcupine's structure, over one key's
operations (already reduced to `_Op`s by linearizability._prepare), and the explanation of a violation.

Model codes: 0 put(a) | 1 get -> out | 2 delete -> out (existed?) | 3 cas(a -> b) -> out (matched?); `out` is
_ANY when the outcome is unknown. The state is the value, None when absent.
"""
import math
import time

INF = math.inf
_ANY = ("<unknown output>",)


class _Op:
    """The search's view of an operation: code, argument(s), output (or _ANY), times, the source op."""
    __slots__ = ("code", "a", "b", "out", "call", "ret", "src")

    def __init__(self, code, a, b, out, call, ret, src):
        self.code, self.a, self.b, self.out, self.call, self.ret, self.src = code, a, b, out, call, ret, src


class _Budget(Exception):
    pass


_LISTED, _LATE = 0, 1


def _search(ops, deadline, max_steps, order=(_LATE, _LISTED)):
    """WGL/Porcupine search over one key's ops: True, False, or raises _Budget.

    At each point the candidates are the listed calls before the first return left in the list, and the "late"
    ops (return +infinity, kept out of the list) called by then; the late ones are tried first (an unknown write
    that is observed at all was usually observed soon). Of two late ops with the same effect and output, the
    later-called one never goes first (swapping them yields the same states), which keeps their subsets from
    exploding. Once every listed op is linearized, the remaining late ops can all go last. Python manages about
    2-3 M steps/s: fine for the ~8-wide concurrency per key of our tests, slow for 16+ clients on one key."""
    listed = [i for i, op in enumerate(ops) if op.ret != INF]
    late = sorted((i for i, op in enumerate(ops) if op.ret == INF), key=lambda i: ops[i].call)
    late_call = [ops[i].call for i in late]
    twin, last = {}, {}
    for i in late:
        sig = (ops[i].code, ops[i].a, ops[i].b, ops[i].out)
        twin[i], last[sig] = last.get(sig, -1), i
    events = sorted([(ops[i].call, 0, i) for i in listed] + [(ops[i].ret, 1, i) for i in listed])
    m = len(events)  # node 0 is the head; node k (1..m) is events[k-1]; -1 is the end of the list
    nxt, prv = list(range(1, m + 1)) + [-1], list(range(-1, m))
    op_of, match, call_node, when = [0] * (m + 1), [-1] * (m + 1), {}, [0.0] * (m + 1)
    for k, (t, is_ret, i) in enumerate(events, 1):
        op_of[k], when[k] = i, t
        if is_ret:
            match[call_node[i]] = k
        else:
            call_node[i] = k
    state, linearized, cache, stack, steps = None, 0, set(), [], 0
    pidx, entry, li, limit = -1, 0, 0, 0.0
    while nxt[0] != -1:
        steps += 1
        if steps & 2047 == 0 and (steps > max_steps or time.monotonic() > deadline):
            raise _Budget(f"{steps} search steps, {len(cache)} cached states")
        if pidx == -1:  # a new point: find the first return, start the first phase
            first = nxt[0]
            while match[first] != -1:
                first = nxt[first]
            pidx, limit, entry, li = 0, when[first], nxt[0], 0
        phase = order[pidx]
        if phase == _LISTED:
            exhausted = match[entry] == -1
        else:
            while li < len(late) and late_call[li] <= limit and (
                    linearized >> late[li] & 1 or (twin[late[li]] >= 0 and not linearized >> twin[late[li]] & 1)):
                li += 1
            exhausted = li == len(late) or late_call[li] > limit
        if exhausted:
            if pidx < len(order) - 1:
                pidx, entry, li = pidx + 1, nxt[0], 0
                continue
            if not stack:
                return False
            ref, state, pidx, limit = stack.pop()  # undo the last choice, go on with the next candidate
            if order[pidx] == _LATE:
                linearized ^= 1 << late[ref]
                li = ref + 1
            else:
                entry = ref
                linearized ^= 1 << op_of[entry]
                ret = match[entry]
                nxt[prv[ret]] = ret
                if nxt[ret] != -1:
                    prv[nxt[ret]] = ret
                nxt[prv[entry]] = entry
                prv[nxt[entry]] = entry
                entry = nxt[entry]
            continue
        i = late[li] if phase == _LATE else op_of[entry]
        op = ops[i]
        code, out = op.code, op.out
        if code == 0:
            legal, new = True, op.a
        elif code == 1:
            legal, new = out == state, state
        elif code == 2:
            legal, new = out is _ANY or out == (state is not None), None
        else:
            hit = state == op.a
            legal, new = out is _ANY or out == hit, op.b if hit else state
        if legal:
            bits = linearized | (1 << i)
            if (bits, new) not in cache:
                cache.add((bits, new))
                stack.append((li if phase == _LATE else entry, state, pidx, limit))
                state, linearized, pidx = new, bits, -1
                if phase == _LISTED:
                    ret = match[entry]
                    p, q = prv[entry], nxt[entry]
                    nxt[p], prv[q] = q, p
                    p, q = prv[ret], nxt[ret]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                continue
        if phase == _LISTED:
            entry = nxt[entry]
        else:
            li += 1
    return True


def _effect(op, state):
    """(legal?, new state) of linearizing op at state."""
    code, out = op.code, op.out
    if code == 0:
        return True, op.a
    if code == 1:
        return out == state, state
    if code == 2:
        return out is _ANY or out == (state is not None), None
    hit = state == op.a
    return out is _ANY or out == hit, op.b if hit else state


def _sweep(ops, deadline, max_steps):
    """Lowe's just-in-time linearization over one key's ops: True, False, or raises _Budget.

    Events are swept in time order (calls first on ties) with the set of configurations (state, bitset of the
    running ops already linearized). At a return, the set is closed under linearizing running ops, and only the
    configurations that linearized the returning op survive (its bit then cleared). Its work grows with the
    concurrency, not with the length of the history, so refuting a late stale read costs what accepting it
    would; the depth-first search instead must exhaust every earlier configuration. Unknown ops stay running
    forever, so two reductions keep their subsets from exploding: of two with the same effect and output, the
    later-called one never goes first; and a configuration is dropped when another has the same state and the
    same known ops linearized with a subset of its unknown ones (an unknown op may also never take effect, so
    the other can do all it can)."""
    unknown, twin, last = 0, {}, {}
    for i in sorted((i for i, op in enumerate(ops) if op.ret == INF), key=lambda i: ops[i].call):
        sig = (ops[i].code, ops[i].a, ops[i].b, ops[i].out)
        twin[i], last[sig], unknown = last.get(sig, -1), i, unknown | 1 << i
    events = sorted([(op.call, 0, i) for i, op in enumerate(ops)]
                    + [(op.ret, 1, i) for i, op in enumerate(ops) if op.ret != INF])
    configs, running, steps = {(None, 0): [0]}, [], 0  # (state, known bits) -> minimal sets of unknown bits
    for _, is_ret, i in events:
        if not is_ret:
            running.append(i)
            continue
        seen = {group: list(sets) for group, sets in configs.items()}
        frontier = [(state, known | u) for (state, known), sets in configs.items() for u in sets]
        while frontier:
            state, bits = frontier.pop()
            for j in running:
                if bits >> j & 1 or (twin.get(j, -1) >= 0 and not bits >> twin[j] & 1):
                    continue
                steps += 1
                if steps & 2047 == 0 and (steps > max_steps or time.monotonic() > deadline):
                    raise _Budget(f"{steps} sweep steps, {sum(map(len, seen.values()))} configurations")
                legal, new = _effect(ops[j], state)
                if not legal:
                    continue
                b = bits | 1 << j
                sets, u = seen.setdefault((new, b & ~unknown), []), b & unknown
                if any(k & u == k for k in sets):
                    continue  # as good or better is already there
                sets[:] = [k for k in sets if k & u != u] + [u]
                frontier.append((new, b))
        mask = 1 << i
        configs = {(state, known ^ mask): sets for (state, known), sets in seen.items() if known & mask}
        running.remove(i)
        if not configs:
            return False
    return True


def _decide(ops, deadline, max_steps):
    """The depth-first search with a tenth of the step budget (enough when a linearization exists: it is
    usually found greedily), then the sweep with the whole budget: True, False, or raises _Budget."""
    try:
        return _search(ops, deadline, max(max_steps // 10, 2048))
    except _Budget as exc:
        first = str(exc)
    try:
        return _sweep(ops, deadline, max_steps)
    except _Budget as exc:
        raise _Budget(f"{first}; then {exc}") from None


def _cut(ops, t):
    """The prefix of a history at time t: ops invoked by t; those still running count as unknown."""
    out = []
    for op in ops:
        if op.call > t or (op.ret > t and op.code == 1):
            continue
        out.append(op if op.ret <= t or op.ret == INF else _Op(op.code, op.a, op.b, _ANY, op.call, INF, op.src))
    return out


def _violates(ops, deadline, max_steps):
    try:
        return _decide(ops, deadline, max_steps) is False
    except _Budget:
        return False


def _explain(ops, deadline, max_steps):
    """(culprit ops, explanation ops): a short non-linearizable prefix, shrunk greedily."""
    times = sorted({op.ret for op in ops if op.ret != INF})
    lo, hi = 0, len(times) - 1
    while lo < hi:  # non-linearizability is prefix-closed: find the first completion that makes it so
        mid = (lo + hi) // 2
        if _violates(_cut(ops, times[mid]), deadline, max_steps):
            hi = mid
        else:
            lo = mid + 1
    kept = _cut(ops, times[lo]) if times else list(ops)
    culprits = {id(op) for op in kept if op.ret == times[lo]} if times else set()
    chunk = len(kept) // 2
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        while i < len(kept) and time.monotonic() < deadline:
            drop = {id(op) for op in kept[i:i + chunk]} - culprits
            trial = [op for op in kept if id(op) not in drop]
            while True:  # keep the writer of every value a kept get or CAS compares against
                seen = {op.out for op in trial if op.code == 1} | {op.a for op in trial if op.code == 3}
                back = [op for op in kept if id(op) in drop and ((op.code == 0 and op.a in seen)
                                                                or (op.code == 3 and op.b in seen))]
                if not back:
                    break
                drop -= {id(op) for op in back}
                trial = [op for op in kept if id(op) not in drop]
            if len(trial) < len(kept) and _violates(trial, deadline, max_steps):
                kept = trial
            else:
                i += chunk
        chunk //= 2
    return [op.src for op in kept if id(op) in culprits], [op.src for op in kept]
