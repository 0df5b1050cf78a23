"""GET /status?verify=1 against replicas made to differ behind the master's back (the only way they can): it must
say so, name no false agreement, and answer status false."""
def verify(cluster):
    # The report itself always succeeds (HTTP 200, as documented); its `status` says whether all is well.
    status, body = cluster.http("GET", "/status?verify=1")
    assert status == 200 and {"status", "message", "seq", "server"} <= set(body), (status, body)
    digests = {r["id"]: (r["keys"], r["digest"]) for r in body["replicas"] if r["state"] == "up"}
    return status, body, digests


def test_verify_reports_replicas_that_hold_a_different_value(cluster):
    assert cluster.http("PUT", "/kv/same", body=b"everywhere")[0] == 200
    status, body, _ = verify(cluster)
    assert status == 200 and body["verify"]["identical"] is True, body
    cluster.write_behind_the_master({"r3": ["{seq:1};put;same;only-on-r3", "{seq:1};com;;"]})
    status, body, digests = verify(cluster)
    assert body["verify"]["identical"] is False and body["status"] is False, body
    assert "REPLICAS DIFFER" in body["message"], body["message"]
    assert digests["r1"] == digests["r2"] != digests["r3"], digests


def test_verify_reports_replicas_that_differ_only_in_when_a_key_was_created(cluster):
    """Same value and version everywhere; on r1 the key was created by an earlier write. `created` is answered to
    clients and compared by transactions, so the digest must see it."""
    cluster.write_behind_the_master({
        "r1": ["{seq:1};put;k;first", "{seq:1};com;;", "{seq:2};put;k;second", "{seq:2};com;;"],
        "r2": ["{seq:2};put;k;second", "{seq:2};com;;"],
        "r3": ["{seq:2};put;k;second", "{seq:2};com;;"],
    })
    reads = {rid: cluster.wire(rid, ";get;k;")[0] for rid in cluster.replica_ids}
    assert {r["message"] for r in reads.values()} == {"second"} and len({r["seq"] for r in reads.values()}) == 1
    assert reads["r1"]["created"] != reads["r2"]["created"] == reads["r3"]["created"], reads
    status, body, digests = verify(cluster)
    assert body["verify"]["identical"] is False, (body, digests)
    assert digests["r2"] == digests["r3"] != digests["r1"], digests
