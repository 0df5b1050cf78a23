"""The master's reload checks the replicas the new file names before it takes it (MasterReloadCheck), so that
adding or replacing a replica cannot leave the cluster half-configured: a new replica must already answer, and a
replica must serve the data directory the file gives it."""
import copy

from kvcluster import free_port, wait_until


def add_entry(cluster, rid):
    config = copy.deepcopy(cluster.config)
    config["replicas"].append({"id": rid, "host": "127.0.0.1", "port": free_port(), "data_dir": f"data/{rid}"})
    cluster.write_config(config)
    return config


def test_adding_a_replica_that_is_not_running_is_refused_until_it_is_started(cluster):
    add_entry(cluster, "r4")
    status, body = cluster.reload_master()
    assert status == 400, body
    assert "new replica r4 at 127.0.0.1:" in body["message"] and "start it first" in body["message"], body
    status, body = cluster.http("GET", "/status")
    assert body["config_epoch"] == 1 and [r["id"] for r in body["replicas"]] == ["r1", "r2", "r3"], body
    assert cluster.http("PUT", "/kv/while-refused", body=b"1")[0] == 200

    cluster.start_replica("r4")
    status, body = cluster.reload_master()
    assert status == 200 and "syncing r4" in body["message"], body
    wait_until(lambda: {r["id"]: r["state"] for r in cluster.http("GET", "/status")[1]["replicas"]}.get("r4") == "up",
               60, "r4 to be synced and join")
    assert cluster.wire("r4", ";get;while-refused;")[0]["message"] == "1"


def test_a_replica_that_serves_another_data_directory_than_the_file_says_is_refused(cluster):
    """Replace with an empty directory, as OPERATIONS says: edit data_dir, restart the replica, reload. Reloading
    before the restart is refused, naming both directories; after it, r2 is synced into the new directory."""
    assert cluster.http("PUT", "/kv/kept", body=b"v")[0] == 200
    config = copy.deepcopy(cluster.config)
    config["replicas"][1]["data_dir"] = "data/r2-new"
    cluster.write_config(config)
    status, body = cluster.reload_master()
    assert status == 400, body
    assert "replica r2 at" in body["message"] and "r2-new: restart it" in body["message"], body

    cluster.stop_replica("r2")
    cluster.start_replica("r2")
    assert cluster.stat("r2")["data_dir"].endswith("/data/r2-new")
    status, body = cluster.reload_master()
    assert status == 200, body
    wait_until(lambda: {r["id"]: r["state"] for r in cluster.http("GET", "/status")[1]["replicas"]}.get("r2") == "up",
               60, "r2 to be synced into its new directory")
    assert cluster.wire("r2", ";get;kept;")[0]["message"] == "v"
    assert cluster.http("PUT", "/kv/after", body=b"w")[0] == 200
