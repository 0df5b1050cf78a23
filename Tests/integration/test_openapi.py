"""docs/openapi.yaml: a valid OpenAPI document whose examples match its schemas, and that describes what the
real cluster answers: every documented operation is called, its HTTP status must be one documented for it,
its content type one documented for that status, and a JSON body must validate against the documented schema."""
import copy
import http.client
import json
import os

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from kvcluster import wait_until

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def resolve(spec, obj):
    """Follows local `$ref`s ("#/components/...") of a response or parameter object."""
    while isinstance(obj, dict) and "$ref" in obj:
        node = spec
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def schema_errors(spec, schema, instance):
    """Validates `instance` against an OpenAPI 3.1 schema (JSON Schema 2020-12) whose `$ref`s point into the
    spec's components: the components ride along in the root schema so `#/components/...` resolves."""
    root = copy.deepcopy(schema)
    root["components"] = spec["components"]
    return sorted(str(e.message) for e in Draft202012Validator(root).iter_errors(instance))


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def media_examples(media):
    if "example" in media:
        yield "example", media["example"]
    for name, example in (media.get("examples") or {}).items():
        yield name, example["value"]


def test_spec_is_valid_openapi(spec):
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, method, _ in operations(spec)}
    assert documented == {
        ("/kv/{key}", "get"), ("/kv/{key}", "put"), ("/kv/{key}", "delete"),
        ("/kv", "get"), ("/kv", "post"), ("/txn", "post"),
        ("/status", "get"), ("/ping", "get"), ("/admin/reload", "post"), ("/admin/repair", "post"), ("/watch", "get"),
        ("/lease", "post"), ("/lease", "get"), ("/lease/{id}", "get"), ("/lease/{id}", "delete"),
        ("/lease/{id}/keepalive", "post"),
    }


def test_examples_match_their_schemas(spec):
    checked = 0
    for path, method, op in operations(spec):
        bodies = [("request", resolve(spec, op.get("requestBody", {})))]
        bodies += [(code, resolve(spec, r)) for code, r in op["responses"].items()]
        for code, body in bodies:
            for ctype, media in (body.get("content") or {}).items():
                for name, value in media_examples(media):
                    errors = schema_errors(spec, media["schema"], value)
                    assert not errors, (method, path, code, ctype, name, errors)
                    checked += 1
    assert checked >= 30, checked


class Api:
    """Calls the cluster and checks each answer against the operation the spec documents for it."""

    def __init__(self, spec, port):
        self.spec = spec
        self.port = port
        self.called = set()

    def call(self, method, template, path, body=None, headers=None, expect=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        where = f"{method} {path[:60]} -> {resp.status}"
        op = self.spec["paths"][template][method.lower()]
        self.called.add((template, method.lower()))
        assert str(resp.status) in op["responses"], f"{where}: status not documented: {data[:300]!r}"
        response = resolve(self.spec, op["responses"][str(resp.status)])
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        assert ctype in response.get("content", {}), f"{where}: content type {ctype!r} not documented"
        for name, header in (response.get("headers") or {}).items():
            value = resp.getheader(name)
            if value is not None:
                errors = schema_errors(self.spec, resolve(self.spec, header)["schema"], value)
                assert not errors, (where, name, value, errors)
        parsed = None
        if ctype == "application/json":
            parsed = json.loads(data)
            errors = schema_errors(self.spec, response["content"][ctype]["schema"], parsed)
            assert not errors, (where, parsed, errors)
        if expect is not None:
            assert resp.status == expect, (where, parsed if parsed is not None else data[:200])
        return resp, parsed if parsed is not None else data


def test_every_operation_answers_as_documented(cluster, spec):
    api = Api(spec, cluster.http_port)

    # PUT / GET / DELETE /kv/{key}, ETag, ?raw, If-Match and ?cas=
    _, body = api.call("PUT", "/kv/{key}", "/kv/greeting", body=b"hello", expect=200)
    version = body["seq"]
    assert [r["server"] for r in body["replicas"]] == ["r1", "r2", "r3"]
    resp, body = api.call("GET", "/kv/{key}", "/kv/greeting", expect=200)
    assert body["message"] == "hello" and body["seq"] == version and resp.getheader("ETag") == f'"{version}"'
    resp, data = api.call("GET", "/kv/{key}", "/kv/greeting?raw", expect=200)
    assert data == b"hello" and resp.getheader("ETag") == f'"{version}"'
    _, data = api.call("GET", "/kv/{key}", "/kv/greeting", headers={"Accept": "application/octet-stream"},
                       expect=200)
    assert data == b"hello"
    resp, body = api.call("PUT", "/kv/{key}", "/kv/greeting?cas=0", body=b"no", expect=412)
    assert body["current_version"] == version and resp.getheader("ETag") == f'"{version}"'
    _, body = api.call("PUT", "/kv/{key}", "/kv/greeting", body=b"hi", headers={"If-Match": f'"{version}"'},
                       expect=200)
    api.call("DELETE", "/kv/{key}", "/kv/greeting", headers={"If-Match": str(version)}, expect=412)
    api.call("PUT", "/kv/{key}", "/kv/greeting?cas=abc", body=b"x", expect=400)
    api.call("PUT", "/kv/{key}", "/kv/" + "k" * 1025, body=b"x", expect=413)
    _, body = api.call("PUT", "/kv/{key}", "/kv/bin", body=bytes(range(256)), expect=200)
    _, body = api.call("GET", "/kv/{key}", "/kv/bin", expect=200)
    assert body["encoding"] == "base64"
    api.call("GET", "/kv/{key}", "/kv/", expect=400)
    api.call("GET", "/kv/{key}", "/kv/absent", expect=404)
    api.call("DELETE", "/kv/{key}", "/kv/greeting", expect=200)
    api.call("DELETE", "/kv/{key}", "/kv/greeting", expect=404)

    # POST /kv: the command syntax
    api.call("POST", "/kv", "/kv", body=b"put;colour;blue;green", expect=200)
    _, body = api.call("POST", "/kv", "/kv", body=b"get;colour", expect=200)
    assert body["message"] == "blue;green"
    api.call("POST", "/kv", "/kv", body=b"del;colour", expect=200)
    api.call("POST", "/kv", "/kv", body=b"get;colour", expect=404)
    api.call("POST", "/kv", "/kv", body=b"fly;colour", expect=400)

    # GET /kv?prefix=: paging with more/next, keys_only, bad requests
    for i in range(3):
        api.call("PUT", "/kv/{key}", f"/kv/list%2F{i}", body=f"v{i}".encode(), expect=200)
    _, body = api.call("GET", "/kv", "/kv?prefix=list/&limit=2", expect=200)
    assert [kv["key"] for kv in body["kvs"]] == ["list/0", "list/1"] and body["more"] and body["next"] == "list/1"
    _, body = api.call("GET", "/kv", "/kv?prefix=list/&limit=2&after=list/1&keys_only=1", expect=200)
    assert [kv["key"] for kv in body["kvs"]] == ["list/2"] and not body["more"] and "value" not in body["kvs"][0]
    api.call("GET", "/kv", "/kv", expect=400)
    api.call("GET", "/kv", "/kv?prefix=x&limit=0", expect=400)

    # POST /txn: both branches, malformed, over the limit
    create_once = {"compare": [{"key": "lock", "target": "exists", "value": False}],
                   "success": [{"op": "put", "key": "lock", "value": "me"}],
                   "failure": [{"op": "get", "key": "lock"}]}
    _, body = api.call("POST", "/txn", "/txn", body=json.dumps(create_once).encode(), expect=200)
    assert body["succeeded"] is True and body["responses"] == []
    _, body = api.call("POST", "/txn", "/txn", body=json.dumps(create_once).encode(), expect=200)
    assert body["succeeded"] is False and body["responses"][0]["value"] == "me"
    api.call("POST", "/txn", "/txn", body=b"{not json", expect=400)
    too_many = {"success": [{"op": "put", "key": f"k{i}", "value": "v"} for i in range(200)]}
    api.call("POST", "/txn", "/txn", body=json.dumps(too_many).encode(), expect=413)

    # Blocking reads and GET /watch (a stream that opens is checked in test_watch.py: it never ends by itself)
    resp, _ = api.call("GET", "/kv/{key}", "/kv/lock?index=0&wait=100ms", expect=200)
    assert int(resp.getheader("X-Kv-Index")) > 0
    resp, _ = api.call("GET", "/kv", "/kv?prefix=list/&index=999999&wait=100ms", expect=200)
    api.call("GET", "/kv/{key}", "/kv/lock?index=1&wait=later", expect=400)
    api.call("GET", "/watch", "/watch", expect=400)
    api.call("GET", "/watch", "/watch?prefix=&from=999999", expect=400)

    # Leases: grant, attach, inspect, keep alive, list, revoke, and their refusals
    wait_until(lambda: cluster.http("GET", "/status")[1]["leases"]["loaded"], 30, "the leases to be loaded")
    _, body = api.call("POST", "/lease", "/lease", body=b'{"ttl_s":30}', expect=200)
    lease = body["id"]
    api.call("POST", "/lease", "/lease", body=b'{"ttl_s":0}', expect=400)
    api.call("POST", "/lease", "/lease", body=json.dumps({"ttl_s": 5, "id": lease}).encode(), expect=409)
    api.call("PUT", "/kv/{key}", f"/kv/leased?lease={lease}", body=b"v", expect=200)
    api.call("PUT", "/kv/{key}", "/kv/leased?lease=12345", body=b"v", expect=404)
    _, body = api.call("GET", "/lease/{id}", f"/lease/{lease}", expect=200)
    assert body["keys"] == [{"key": "leased"}]
    api.call("GET", "/lease/{id}", "/lease/12345", expect=404)
    api.call("GET", "/lease/{id}", "/lease/x", expect=400)
    api.call("POST", "/lease/{id}/keepalive", f"/lease/{lease}/keepalive", expect=200)
    api.call("POST", "/lease/{id}/keepalive", "/lease/12345/keepalive", expect=404)
    _, body = api.call("GET", "/lease", "/lease", expect=200)
    assert [x["id"] for x in body["leases"]] == [lease]
    _, body = api.call("DELETE", "/lease/{id}", f"/lease/{lease}", expect=200)
    assert body["keys_deleted"] == 1
    api.call("DELETE", "/lease/{id}", f"/lease/{lease}", expect=404)

    # GET /status (+ verify), GET /ping
    _, body = api.call("GET", "/status", "/status", expect=200)
    assert [r["id"] for r in body["replicas"]] == ["r1", "r2", "r3"] and body["status"] is True
    _, body = api.call("GET", "/status", "/status?verify=1", expect=200)
    assert body["verify"]["identical"] is True
    api.call("GET", "/ping", "/ping", expect=200)
    _, body = api.call("POST", "/admin/repair", "/admin/repair", expect=200)
    assert body["repair"]["identical"] is True, body

    # POST /admin/reload: accepted, rejected (the old configuration stays), accepted again
    with open(cluster.config_path) as f:
        good = f.read()
    api.call("POST", "/admin/reload", "/admin/reload", expect=200)
    cluster.write_config(text="replicas: [\n")
    _, body = api.call("POST", "/admin/reload", "/admin/reload", expect=400)
    assert "old configuration stays in force" in body["message"]
    cluster.write_config(text=good)
    api.call("POST", "/admin/reload", "/admin/reload", expect=200)

    # Not an operation, but documented in info.description: other methods answer 405 with Allow.
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=30)
    try:
        conn.request("PATCH", "/kv/lock", body=b"x")
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 405 and resp.getheader("Allow") == "GET, PUT, DELETE"
    assert not schema_errors(spec, {"$ref": "#/components/schemas/Answer"}, body)

    documented = {(path, method) for path, method, _ in operations(spec)}
    assert api.called == documented, documented - api.called
