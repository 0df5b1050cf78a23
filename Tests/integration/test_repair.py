"""Repair: POST /admin/repair resyncs every in-sync replica whose digest differs from the majority's, only from
replicas holding the majority's copy; without a majority it changes nothing and says so; with
availability.auto_repair the master does it after a periodic verify finds a difference. Replicas are made to differ
the only way they can: data written behind the master's back, with the master stopped."""
from helpers import running_cluster
from kvcluster import wait_until


def verified(cluster):
    status, body = cluster.http("GET", "/status?verify=1")
    assert status == 200, body
    return body


def identical_and_up(cluster):
    body = verified(cluster)
    return body["verify"]["identical"] and all(r["state"] == "up" for r in body["replicas"])


def value_on(cluster, rid, key):
    return cluster.wire(rid, f";get;{key};")[0].get("message")


def test_a_replica_made_to_differ_is_restored_from_the_majority(tmp_path):
    with running_cluster(tmp_path) as c:
        for i in range(20):
            assert c.http("PUT", f"/kv/k{i}", body=f"v{i}".encode())[0] == 200
        c.write_behind_the_master({"r3": ["{seq:1};put;k3;planted-on-r3", "{seq:1};com;;",
                                          "{seq:2};put;extra;only-on-r3", "{seq:2};com;;"]})
        assert verified(c)["verify"]["identical"] is False
        joined = c.stat("r3")["joined_since"]
        status, body = c.http("POST", "/admin/repair")
        assert status == 200 and body["status"] is True, body
        assert body["repair"]["resyncing"] == ["r3"] and body["repair"]["sources"] == ["r1", "r2"], body
        assert "resyncing r3 from r1, r2" in body["message"], body
        wait_until(lambda: identical_and_up(c), 30, "r3 to be resynced")
        assert value_on(c, "r3", "k3") == "v3" and c.wire("r3", ";get;extra;")[0]["code"] == "not_found"
        assert c.stat("r3")["joined_since"] > joined, "restored by a state transfer"
        assert "repair: r3 differs from the majority" in c.log("master")
        # Nothing left to repair: the same call says so and changes nothing.
        status, body = c.http("POST", "/admin/repair")
        assert status == 200 and body["repair"]["identical"] is True and body["repair"]["resyncing"] == [], body


def test_without_a_majority_a_repair_changes_nothing_and_says_so(tmp_path):
    with running_cluster(tmp_path) as c:
        assert c.http("PUT", "/kv/k", body=b"original")[0] == 200
        c.write_behind_the_master({"r2": ["{seq:1};put;k;on-r2", "{seq:1};com;;"],
                                   "r3": ["{seq:2};put;k;on-r3", "{seq:2};com;;"]})
        before = {rid: c.stat(rid)["digest"] for rid in c.replica_ids}
        status, body = c.http("POST", "/admin/repair")
        assert status == 409 and body["status"] is False and "no majority" in body["message"], body
        assert body["repair"]["resyncing"] == [] and "majority" not in body["repair"], body
        assert {rid: c.stat(rid)["digest"] for rid in c.replica_ids} == before
        assert all(r["state"] == "up" for r in verified(c)["replicas"])
        assert [value_on(c, rid, "k") for rid in c.replica_ids] == ["original", "on-r2", "on-r3"]


def test_auto_repair_restores_a_replica_after_a_periodic_verify(tmp_path):
    with running_cluster(tmp_path, availability={"auto_repair": "true", "verify_interval_s": 1}) as c:
        assert c.http("PUT", "/kv/k", body=b"original")[0] == 200
        c.write_behind_the_master({"r2": ["{seq:1};put;k;planted", "{seq:1};com;;"]})
        wait_until(lambda: value_on(c, "r2", "k") == "original" and identical_and_up(c), 30,
                   "the periodic verify to repair r2")
        assert "periodic verify: resyncing r2 from r1, r3" in c.log("master")
