"""Bearer tokens on the HTTP API (security.tokens_file), against nginx and the real master: every role across the
whole API, 401 without a known token, 403 outside its permission, revocation by reload."""
import json
import os
import subprocess

import pytest

from helpers import running_cluster

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")


@pytest.fixture
def tokened(tmp_path):
    def add_tokens(cluster):
        cluster.reader = cluster.add_token("reader", "read-only")
        cluster.app_reader = cluster.add_token("app-reader", "read-only", ["app/"])
        cluster.writer = cluster.add_token("writer", "read-write", ["app/", "shared/"])
    with running_cluster(tmp_path, prepare=add_tokens, tokens=True) as c:
        yield c


def call(cluster, method, path, token, body=None, headers=None):
    headers = dict(headers or {})
    headers["Authorization"] = f"Bearer {token}" if token is not None else ""
    if token is None:
        headers.pop("Authorization")
        saved, cluster.token = cluster.token, None
        try:
            return cluster.http(method, path, body=body, headers=headers)
        finally:
            cluster.token = saved
    return cluster.http(method, path, body=body, headers=headers)


def txn(*ops, compare=()):
    return json.dumps({"compare": list(compare), "success": list(ops), "failure": []}).encode()


def test_without_a_known_token_every_endpoint_but_ping_is_401(tokened):
    assert tokened.http("PUT", "/kv/app/a", body=b"1")[0] == 200
    requests = [("GET", "/kv/app/a", None), ("PUT", "/kv/app/a", b"x"), ("DELETE", "/kv/app/a", None),
                ("POST", "/kv", b"put;app/a;x"), ("GET", "/kv?prefix=", None), ("POST", "/txn", txn()),
                ("GET", "/status", None), ("GET", "/status?verify=1", None), ("POST", "/admin/reload", None)]
    for token in (None, "kv_" + "0" * 64, "not-bearer"):
        for method, path, body in requests:
            headers = {"Authorization": "Basic dXNlcjpwYXNz"} if token == "not-bearer" else None
            status, answer = call(tokened, method, path, None if token == "not-bearer" else token, body, headers)
            assert status == 401, (token, method, path, status, answer)
            assert answer["status"] is False and answer["server"] == "m1" and "token" in answer["message"], answer
    assert call(tokened, "GET", "/ping", None)[0] == 200, "health checks need no token"
    status, body = tokened.http("GET", "/kv/app/a")
    assert status == 200 and body["message"] == "1", "nothing was written by the refused requests"


def test_read_only_reads_everything_and_writes_nothing(tokened):
    assert tokened.http("PUT", "/kv/app/a", body=b"1")[0] == 200
    assert tokened.http("PUT", "/kv/other", body=b"2")[0] == 200
    reader = tokened.reader
    assert call(tokened, "GET", "/kv/other", reader)[1]["message"] == "2"
    assert call(tokened, "POST", "/kv", reader, b"get;app/a")[1]["message"] == "1"
    status, body = call(tokened, "GET", "/kv?prefix=", reader)
    assert status == 200 and len(body["kvs"]) == 2, body
    assert call(tokened, "POST", "/txn", reader, txn({"op": "get", "key": "other"}))[0] == 200
    assert call(tokened, "GET", "/status", reader)[0] == 200
    for method, path, body in (("PUT", "/kv/app/a", b"x"), ("DELETE", "/kv/other", None), ("POST", "/kv", b"del;other"),
                               ("POST", "/txn", txn({"op": "put", "key": "app/a", "value": "x"})),
                               ("GET", "/status?verify=1", None), ("POST", "/admin/reload", None)):
        status, answer = call(tokened, method, path, reader, body)
        assert status == 403 and "token reader (read-only" in answer["message"], (method, path, answer)
    assert tokened.http("GET", "/kv/app/a")[1]["message"] == "1"


def test_prefixes_bound_what_a_token_reads_and_writes(tokened):
    assert tokened.http("PUT", "/kv/secret", body=b"s")[0] == 200
    writer, app_reader = tokened.writer, tokened.app_reader
    assert call(tokened, "PUT", "/kv/app/x", writer, b"1")[0] == 200
    assert call(tokened, "PUT", "/kv/shared/y", writer, b"2")[0] == 200
    assert call(tokened, "POST", "/kv", writer, b"put;app/z;3")[0] == 200
    assert call(tokened, "DELETE", "/kv/app/z", writer)[0] == 200
    assert call(tokened, "POST", "/txn", writer, txn({"op": "put", "key": "app/t", "value": "4"},
                                                     compare=[{"key": "shared/y", "target": "value", "op": "=",
                                                               "value": "2"}]))[0] == 200
    assert call(tokened, "GET", "/kv?prefix=app/", writer)[0] == 200
    assert call(tokened, "GET", "/kv/app/x", app_reader)[1]["message"] == "1"
    denied = [(writer, "PUT", "/kv/secret", b"x"), (writer, "GET", "/kv/secret", None),
              (writer, "POST", "/kv", b"get;secret"), (writer, "GET", "/kv?prefix=", None),
              (writer, "GET", "/kv?prefix=ap", None),
              (writer, "POST", "/txn", txn({"op": "put", "key": "app/ok", "value": "1"}, {"op": "get", "key": "secret"})),
              (writer, "POST", "/txn", txn({"op": "put", "key": "app/ok", "value": "1"},
                                           compare=[{"key": "secret", "target": "exists", "op": "=", "value": True}])),
              (writer, "GET", "/status?verify=1", None), (writer, "POST", "/admin/reload", None),
              (app_reader, "GET", "/kv/secret", None), (app_reader, "PUT", "/kv/app/x", b"y"),
              (app_reader, "GET", "/kv?prefix=", None)]
    for token, method, path, body in denied:
        status, answer = call(tokened, method, path, token, body)
        assert status == 403 and answer["status"] is False, (method, path, answer)
    assert tokened.http("GET", "/kv/secret")[1]["message"] == "s"
    assert tokened.http("GET", "/kv/app/ok")[0] == 404, "a denied transaction wrote nothing"


def test_admin_may_do_everything_and_a_removed_token_is_revoked_by_reload(tokened):
    status, body = tokened.http("GET", "/status?verify=1")
    assert status == 200 and body["verify"]["identical"], body
    assert tokened.http("POST", "/admin/reload")[0] == 200
    assert call(tokened, "GET", "/status", tokened.reader)[0] == 200
    out = subprocess.run([os.path.join(SCRIPTS, "kv-token"), "--config", tokened.config_path, "remove", "reader"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert call(tokened, "GET", "/status", tokened.reader)[0] == 200, "in force until the reload"
    status, body = tokened.http("POST", "/admin/reload")
    assert status == 200, body
    assert call(tokened, "GET", "/status", tokened.reader)[0] == 401
    # kv-token makes working tokens; the file holds only their digests.
    out = subprocess.run([os.path.join(SCRIPTS, "kv-token"), "--config", tokened.config_path, "add", "late",
                          "read-only"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    late = out.stdout.strip()
    assert late.startswith("kv_") and late not in open(tokened.tokens_path).read()
    assert oct(os.stat(tokened.tokens_path).st_mode & 0o777) == "0o644"
    assert tokened.http("POST", "/admin/reload")[0] == 200
    assert call(tokened, "GET", "/status", late)[0] == 200


def test_a_broken_tokens_file_stops_the_start_and_a_reload_keeps_the_old_tokens(tokened):
    with open(tokened.tokens_path, "a") as f:
        f.write("- {name: bad, role: superuser, sha256: '00'}\n")
    status, body = tokened.http("POST", "/admin/reload")
    assert status == 400 and "tokens[4].role 'superuser'" in body["message"], body
    assert call(tokened, "GET", "/status", tokened.reader)[0] == 200, "the old tokens stay in force"
    tokened.stop_master()
    with pytest.raises(RuntimeError, match="tokens"):
        tokened.start_master()


def test_leases_need_a_writer_and_a_revoke_needs_every_attached_key(tokened):
    from kvcluster import wait_until
    wait_until(lambda: tokened.http("GET", "/status")[1]["leases"]["loaded"], 30, "the leases to be loaded")
    status, body = call(tokened, "POST", "/lease", tokened.reader, body=b'{"ttl_s":30}')
    assert status == 403 and "leases" in body["message"], body
    status, body = call(tokened, "POST", "/lease", tokened.writer, body=b'{"ttl_s":30}')
    assert status == 200, body
    lease = body["id"]
    assert call(tokened, "PUT", f"/kv/app/a?lease={lease}", tokened.writer, body=b"1")[0] == 200
    assert call(tokened, "PUT", f"/kv/other/b?lease={lease}", tokened.writer, body=b"2")[0] == 403
    # The admin attaches a key outside the writer's prefixes: the writer may no longer revoke the lease.
    assert tokened.http("PUT", f"/kv/other/b?lease={lease}", body=b"2")[0] == 200
    status, info = call(tokened, "GET", f"/lease/{lease}", tokened.app_reader)
    assert status == 200 and [k["key"] for k in info["keys"]] == ["app/a"], "only the keys the token may read"
    assert call(tokened, "POST", f"/lease/{lease}/keepalive", tokened.writer)[0] == 200
    status, body = call(tokened, "DELETE", f"/lease/{lease}", tokened.writer)
    assert status == 403 and "other/b" in body["message"], body
    assert call(tokened, "DELETE", f"/lease/{lease}", tokened.reader)[0] == 403
    status, body = tokened.http("DELETE", f"/lease/{lease}")
    assert status == 200 and body["keys_deleted"] == 2, body
