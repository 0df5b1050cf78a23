"""The lock recipe of docs/OPERATIONS.md (issue 13): 8 contenders for 30 s, each taking the lock by creating its
key if absent with a lease, waiting with a blocking query while another holds it, and letting go by revoking its
lease, or by vanishing (its keepalives stop, the lease expires and the lock passes on). Mutual exclusion is
checked from the recorded history: the lock key's watch stream, in index order, against what each client saw."""
import http.client
import json
import random
import threading
import time

from kvsse import EventStream

LOCK = "locks/job"
CONTENDERS = 8
RUN_S = 30
TTL_S = 2


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None, response.getheader("X-Kv-Index")
    finally:
        conn.close()


class Contender(threading.Thread):
    def __init__(self, port, name, deadline, seed):
        super().__init__(name=name)
        self.port, self.deadline, self.random = port, deadline, random.Random(seed)
        self.acquired = []  # (index of the put that took the lock, lease)
        self.released = []  # (lease, index of the revoke)
        self.vanished = []  # leases abandoned while holding the lock
        self.errors = []

    def keepalive(self, lease, stop):
        while not stop.wait(0.4):
            call(self.port, "POST", f"/lease/{lease}/keepalive")

    def run(self):
        try:
            while time.monotonic() < self.deadline:
                self.round()
        except Exception as error:  # surfaced by the test
            self.errors.append(repr(error))

    def round(self):
        status, body, _ = call(self.port, "POST", "/lease", json.dumps({"ttl_s": TTL_S}))
        assert status == 200, body
        lease = body["id"]
        stop = threading.Event()
        threading.Thread(target=self.keepalive, args=(lease, stop), daemon=True).start()
        try:
            while time.monotonic() < self.deadline:
                status, body, _ = call(self.port, "PUT", f"/kv/{LOCK}?lease={lease}", self.name.encode(),
                                       {"If-Match": "0"})
                if status == 200:
                    self.acquired.append((body["index"], lease))
                    time.sleep(self.random.uniform(0.02, 0.2))  # the work done under the lock
                    if self.random.random() < 0.2:
                        self.vanished.append(lease)  # a holder that dies: its keepalives stop with it
                        return
                    status, body, _ = call(self.port, "DELETE", f"/lease/{lease}")
                    assert status == 200 and body["keys_deleted"] == 1, body
                    self.released.append((lease, body["index"]))
                    return
                if status == 409:  # another contender's attempt held the key at that instant: try again
                    time.sleep(self.random.uniform(0.001, 0.02))
                    continue
                assert status == 412, (status, body)
                # Held by another: wait until the key changes (deleted or expired), at most 5 s a query.
                status, _, index = call(self.port, "GET", f"/kv/{LOCK}")
                if status == 200:
                    call(self.port, "GET", f"/kv/{LOCK}?index={index}&wait=5s")
        finally:
            stop.set()


def test_eight_contenders_never_hold_the_lock_together_and_it_passes_on_when_a_holder_vanishes(cluster):
    stream = EventStream(cluster.http_port, f"/watch?key={LOCK}", timeout_s=60)
    stream.wait_ready()
    deadline = time.monotonic() + RUN_S
    contenders = [Contender(cluster.http_port, f"c{i}", deadline, seed=i) for i in range(CONTENDERS)]
    for contender in contenders:
        contender.start()
    for contender in contenders:
        contender.join(RUN_S + 60)
    assert not any(c.is_alive() for c in contenders), "a contender hung"
    assert not [e for c in contenders for e in c.errors], [e for c in contenders for e in c.errors]
    acquired = {index: (c.name, lease) for c in contenders for index, lease in c.acquired}
    vanished = {lease for c in contenders for lease in c.vanished}
    revoked = {lease: index for c in contenders for lease, index in c.released}
    # The lock's whole history, in index order, until every acquisition has been let go.
    events = []
    while len([e for e in events if e["event"] == "put"]) < len(acquired) or events[-1]["event"] == "put":
        events += stream.changes(1)
    stream.close()
    holder = None
    passed_on_after_expiry = 0
    for event in events:
        data = event["data"]
        if event["event"] == "put":
            assert holder is None, f"index {data['index']}: {data['value']} took the lock {holder} held"
            assert acquired.get(data["index"]) == (data["value"], data["lease"]), (data, acquired.get(data["index"]))
            holder = (data["value"], data["lease"])
        else:
            assert holder is not None, f"index {data['index']}: {event['event']} of a free lock"
            if event["event"] == "expire":
                assert holder[1] in vanished, f"lease {holder[1]} expired while its holder kept it alive"
                passed_on_after_expiry += 1
            else:
                assert revoked.get(holder[1]) == data["index"], (holder, data)
            holder = None
    assert len(acquired) >= 20, f"only {len(acquired)} acquisitions in {RUN_S} s"
    assert len({name for name, _ in acquired.values()}) == CONTENDERS, "every contender held the lock"
    assert passed_on_after_expiry >= 1 and passed_on_after_expiry == len(vanished)
    print(f"lock recipe: {len(acquired)} acquisitions by {CONTENDERS} contenders in {RUN_S} s, "
          f"{passed_on_after_expiry} passed on after a holder vanished")
