"""Every start-up refusal says what to do for the process that refused: a port someone else holds, a data
directory another replica holds, a data_dir that cannot be created, an id the file does not name. Each process
exits non-zero, names the setting in cluster.yaml, and touches no data."""
import copy
import os
import socket

from crash_helpers import exit_code
from kvcluster import wait_until


def refused(cluster, name, argv_tail=None, config_path=None):
    """Starts `name` (with `config_path`, else the cluster's file) past the harness's free-port check and waits
    for it to exit; (exit code, what it logged)."""
    before = len(cluster.log(name)) if os.path.exists(os.path.join(cluster.run_dir, "logs", f"{name}.log")) else 0
    config_path = config_path or cluster.config_path
    if name == "master":
        argv = [os.path.join(cluster.bin_dir, "kv-master"), "--config", config_path]
    else:
        argv = [os.path.join(cluster.bin_dir, "kv-replicad"), "--config", config_path, "--id", argv_tail or name]
    cluster.ensure_key()
    cluster._spawn(name, argv)
    wait_until(lambda: not cluster.is_running(name), 30, f"{name} to refuse to start")
    return exit_code(cluster, name), cluster.log(name)[before:]


def hold_port(port):
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", port))
    held.listen(1)
    return held


def test_a_replica_whose_port_is_taken_says_which_setting_to_change(unstarted_cluster):
    c = unstarted_cluster
    port = c.replica("r1")["port"]
    with hold_port(port):
        code, log = refused(c, "r1")
    assert code == 1, log
    assert f"cannot listen on 127.0.0.1:{port} (replicas[r1].listen, or its port): Address already in use" in log, log
    assert "another process holds it" in log and "ss -ltnp" in log, log


def test_a_second_replica_on_the_same_data_directory_is_refused(unstarted_cluster):
    """One file cannot give two replicas one data_dir (the loader refuses it), but two files can: a copy of
    cluster.yaml edited on the same host, a unit and a shell started at once. The data directory's lock stops
    the second process before it reads anything."""
    import yaml
    from kvcluster import free_port
    c = unstarted_cluster
    c.start_replica("r1")
    other = copy.deepcopy(c.config)
    other["replicas"][0]["port"] = free_port()
    other_path = os.path.join(os.path.dirname(c.config_path), "other.yaml")
    with open(other_path, "w") as f:
        yaml.safe_dump(other, f, sort_keys=False)
    code, log = refused(c, "r1-again", argv_tail="r1", config_path=other_path)
    assert code == 1, log
    pid = c.procs["r1"].pid
    assert f"another kv-replicad (pid {pid}) holds" in log and "give each its own" in log, log
    assert c.is_running("r1") and c.stat("r1")["status"], "the first replica keeps serving"


def test_a_data_directory_that_cannot_be_made_names_the_path_and_the_cause(unstarted_cluster):
    c = unstarted_cluster
    blocker = os.path.join(c.run_dir, "not-a-directory")
    with open(blocker, "w") as f:
        f.write("a file where data_dir wants a directory\n")
    config = copy.deepcopy(c.config)
    config["replicas"][0]["data_dir"] = os.path.join(blocker, "r1")
    c.write_config(config)
    code, log = refused(c, "r1")
    assert code == 1, log
    assert f"mkdir {blocker}: Not a directory (a component of the path is a file" in log, log


def test_the_master_says_which_listen_setting_is_taken(unstarted_cluster):
    c = unstarted_cluster
    for rid in c.replica_ids:
        c.start_replica(rid)
    query_port = int(c.config["master"]["query_listen"].rsplit(":", 1)[1])
    with hold_port(query_port):
        code, log = refused(c, "master")
    assert code == 1, log
    assert f"cannot listen on 127.0.0.1:{query_port} (master.query_listen): Address already in use" in log, log
    listen_port = int(c.master_listen().rsplit(":", 1)[1])
    with hold_port(listen_port):
        code, log = refused(c, "master")
    assert code == 1, log
    assert f"cannot listen on 127.0.0.1:{listen_port} (master.listen)" in log and "another process holds it" in log, log
    c.start_master()  # with both ports free again it starts on the same directory: nothing was left behind


def test_an_unknown_replica_id_lists_the_known_ones(unstarted_cluster):
    code, log = refused(unstarted_cluster, "r9")
    assert code == 78, log
    assert "no replica with id 'r9' (known: r1, r2, r3)" in log, log
