"""Mutual TLS on the cluster links (security.tls), against real processes: the cluster works through it, and
nothing that lacks a certificate of the cluster's CA gets a byte executed, in either direction: a plain TCP
client, a client with no certificate or a foreign one, and (the master's side) a replica impostor."""
import json
import os
import socket
import ssl
import subprocess
import threading

import pytest

import kvcluster
import linkpki
from crash_helpers import wait_healthy
from helpers import exchange_until_close, replica_address, running_cluster
from kvcluster import WireClient


@pytest.fixture
def tls_cluster(tmp_path):
    with running_cluster(tmp_path, link_tls=True) as c:
        yield c


def digests(cluster):
    wait_healthy(cluster)  # a 200 comes before the replicas' acks: read once every `com` is delivered
    return [cluster.stat(rid)["digest"] for rid in cluster.replica_ids]


def plain_exchange(host, port, payload, timeout_s=10.0):
    """`payload` on a plain TCP connection, as `nc` would send it; every byte until the server closes."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        return exchange_until_close(sock, payload)


def test_the_cluster_works_through_mutual_tls(tls_cluster):
    c = tls_cluster
    assert c.http("PUT", "/kv/a", body=b"1")[0] == 200
    status, body = c.http("POST", "/kv", body=b"put;b;2")
    assert status == 200, body
    for _ in range(6):  # reads rotate over the replicas: each of them answers through TLS
        status, body = c.http("GET", "/kv/a")
        assert status == 200 and body["message"] == "1", body
    status, body = c.http("GET", "/kv?prefix=&limit=10")
    assert status == 200 and [kv["key"] for kv in body["kvs"]] == ["a", "b"], body
    status, body = c.http("DELETE", "/kv/b")
    assert status == 200, body
    status, body = c.http("GET", "/status?verify=1")
    assert status == 200 and body["status"], body
    assert all(r["up"] for r in body["replicas"]), body
    for rid in c.replica_ids:
        assert f"ready on 127.0.0.1:{c.replica(rid)['port']} (mutual TLS)" in c.log(rid)


def test_plain_tcp_gets_nothing_executed(tls_cluster):
    c = tls_cluster
    assert c.http("PUT", "/kv/k", body=b"real")[0] == 200
    before = digests(c)
    host, port = replica_address(c, "r2")
    answer = plain_exchange(host, port, b"123456789012;put;k;intruder\n123456789012;com;;\n;reset;;\n;stat;;\n")
    assert b"{" not in answer, f"a plain connection got a wire reply: {answer!r}"
    assert digests(c) == before
    assert c.wire("r2", ";get;k;")[0]["message"] == "real"
    query_host, query_port = c.config["master"]["query_listen"].rsplit(":", 1)
    answer = plain_exchange(query_host, int(query_port), b"1000000001;qry;;\n")
    assert b"{" not in answer, answer
    kvcluster.wait_until(lambda: "refused a connection" in c.log("r2"), 10, "r2 to log the refusal")


def tls_client_context(cluster, cert=None, key=None, present=True):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=os.path.join(os.path.dirname(cluster.config_path), "keys/link-tls/ca.crt"))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if present:
        config_dir = os.path.dirname(cluster.config_path)
        context.load_cert_chain(cert or os.path.join(config_dir, "keys/link-tls/node.crt"),
                                key or os.path.join(config_dir, "keys/link-tls/node.key"))
    return context


def tls_exchange(context, host, port, payload, timeout_s=10.0):
    """`payload` inside TLS; every byte the server sends back until it closes (or the TLS error that ends it)."""
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                return exchange_until_close(sock, payload)
        except (ssl.SSLError, BrokenPipeError) as error:
            return error


def test_a_client_without_a_certificate_of_the_ca_is_refused(tls_cluster, tmp_path):
    c = tls_cluster
    assert c.http("PUT", "/kv/k", body=b"real")[0] == 200
    before = digests(c)
    host, port = replica_address(c, "r1")
    key = c.wire_key("master")
    # The master's own key, but no client certificate: the replica ends the TLS handshake.
    hello = b";stat;;\n"
    answer = tls_exchange(tls_client_context(c, present=False), host, port, hello)
    assert isinstance(answer, Exception) or b"{" not in answer, answer
    # A certificate from another CA, for the right address.
    foreign = tmp_path / "foreign"
    linkpki.make_ca(str(foreign))
    crt, foreign_key = linkpki.make_node(str(foreign), str(foreign))
    answer = tls_exchange(tls_client_context(c, cert=crt, key=foreign_key), host, port, hello)
    assert isinstance(answer, Exception) or b"{" not in answer, answer
    # The cluster's certificate opens TLS, and then the cluster key is still needed.
    with pytest.raises(Exception):
        WireClient(host, port, key=os.urandom(32), role="master", client_id="intruder",
                   tls=tls_client_context(c))
    client = WireClient(host, port, key=key, role="master", client_id="tests", expected_server="r1",
                        tls=tls_client_context(c))
    try:
        assert client.call(";get;k;")[0]["message"] == "real"
    finally:
        client.close()
    assert digests(c) == before


class Impostor:
    """A TLS server on a replica's port that records whatever a client sends it once the handshake passes."""

    def __init__(self, host, port, cert, key):
        self.received = b""
        self.handshakes = 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.context = context
        self.listener = socket.create_server((host, port))
        self.listener.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            conn.settimeout(2)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    while data := tls.recv(65536):
                        self.received += data
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self):
        self.stopping.set()
        self.thread.join()
        self.listener.close()


@pytest.mark.parametrize("which", ["foreign CA", "wrong address"])
def test_the_master_sends_nothing_to_a_replica_impostor(tls_cluster, tmp_path, which):
    c = tls_cluster
    assert c.http("PUT", "/kv/k", body=b"real")[0] == 200
    host, port = replica_address(c, "r2")
    if which == "foreign CA":
        foreign = tmp_path / "foreign"
        linkpki.make_ca(str(foreign))
        cert, key = linkpki.make_node(str(foreign), str(foreign))
    else:  # signed by the cluster's CA, but for another host
        ca_dir = os.path.join(os.path.dirname(c.config_path), "keys", "link-tls")
        cert, key = linkpki.make_node(str(tmp_path), ca_dir, sans=("IP:10.9.9.9", "DNS:elsewhere.example"))
    c.stop_replica("r2")
    impostor = Impostor(host, port, cert, key)
    try:
        status, body = c.http("PUT", "/kv/k", body=b"while r2 is an impostor")
        assert status == 503, body
        status, body = c.http("GET", "/status")
        r2 = next(r for r in body["replicas"] if r["id"] == "r2")
        assert not r2["up"], r2
        expected = "is not signed by security.tls.ca_file" if which == "foreign CA" else "does not name the address dialled"
        assert expected in r2.get("error", ""), r2
    finally:
        impostor.close()
    assert impostor.received == b"", f"the master sent {impostor.received!r} to an impostor"
    c.start_replica("r2")
    c.wait_cluster_ready()
    status, body = c.http("GET", "/kv/k")
    assert status == 200 and body["message"] == "real", body


def test_kv_wire_speaks_tls(tls_cluster):
    c = tls_cluster
    assert c.http("PUT", "/kv/tool", body=b"hello")[0] == 200
    tool = os.path.join(kvcluster.REPO, "scripts", "kv-wire")
    out = subprocess.run([tool, "--config", c.config_path, "r3", ";get;tool"], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out)["message"] == "hello", out


def test_a_bad_tls_section_is_a_config_error(tmp_path):
    os.chmod(tmp_path, 0o755)
    c = kvcluster.Cluster.generate(str(tmp_path / "kv"), link_tls=True)
    c.ensure_key()
    linkpki.ensure_dev_files(c.config, os.path.dirname(c.config_path))
    with open(c.config_path) as f:
        text = f.read()
    c.write_config(text=text.replace("keys/link-tls/node.crt", "keys/link-tls/missing.crt"))
    result = subprocess.run([os.path.join(c.bin_dir, "kv-replicad"), "--config", c.config_path, "--id", "r1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result
    assert "security.tls.cert_file" in result.stderr + result.stdout and "missing.crt" in result.stderr + result.stdout
    # TLS without a cluster key: the roles would be unknown.
    c.write_config(text=text.replace("  cluster_key_file: keys/cluster.key\n", ""))
    result = subprocess.run([os.path.join(c.bin_dir, "kv-master"), "--config", c.config_path],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result
    assert "security.tls needs security.cluster_key_file" in result.stderr + result.stdout, result


def test_a_reload_says_that_link_tls_changes_need_a_restart(tls_cluster):
    c = tls_cluster
    with open(c.config_path) as f:
        text = f.read()
    config_dir = os.path.dirname(c.config_path)
    os.replace(os.path.join(config_dir, "keys/link-tls/node.crt"), os.path.join(config_dir, "keys/link-tls/other.crt"))
    c.write_config(text=text.replace("keys/link-tls/node.crt", "keys/link-tls/other.crt"))
    status, body = c.reload_master()
    assert status == 200, body
    assert "security.tls need a restart of every process" in body["message"], body
    # The links keep the TLS set up at start.
    status, body = c.http("PUT", "/kv/after-reload", body=b"v")
    assert status == 200, body
