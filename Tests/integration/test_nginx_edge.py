"""The HTTP edge as shipped (nginx/kv-site.conf, kv-locations.conf), against real nginx, master and replicas: HTTPS
with HTTP/2 beside loopback HTTP, and the per-address request limits answering 429 in the usual JSON shape."""
import http.client
import json
import ssl
import subprocess

import pytest

import kvcluster
from helpers import running_cluster


@pytest.fixture
def limited(tmp_path):
    def count_loopback(cluster):
        cluster.limit_loopback = True
    with running_cluster(tmp_path, prepare=count_loopback) as c:
        yield c


def test_https_with_http2_serves_the_api(cluster):
    crt, _ = cluster.ensure_tls()
    url = f"https://127.0.0.1:{cluster.https_port}"
    put = subprocess.run(["curl", "-sS", "--http2", "--cacert", crt, "-X", "PUT", "--data-binary", "over tls",
                          "-w", "\n%{http_version} %{http_code}", f"{url}/kv/secure"],
                         capture_output=True, text=True, timeout=30)
    body, meta = put.stdout.rsplit("\n", 1)
    assert meta == "2 200", (meta, body, put.stderr)
    assert json.loads(body)["status"] is True
    context = ssl.create_default_context(cafile=crt)
    conn = http.client.HTTPSConnection("127.0.0.1", cluster.https_port, context=context, timeout=10)
    status, answer = kvcluster.exchange(conn, "GET", "/kv/secure")
    assert status == 200 and answer["message"] == "over tls", answer
    # The certificate is checked: a client that does not trust it is refused.
    refused = subprocess.run(["curl", "-sS", f"{url}/ping"], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "certificate" in refused.stderr, refused.stderr
    # Plain HTTP stays on loopback for the dev cluster.
    assert cluster.http("GET", "/kv/secure")[1]["message"] == "over tls"


def test_a_client_past_the_request_limit_gets_429_as_json(limited):
    conn = http.client.HTTPConnection("127.0.0.1", limited.http_port, timeout=10)
    statuses = {}
    limited_body = None
    try:
        for _ in range(4000):
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            data = resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status == 429 and limited_body is None:
                limited_body = json.loads(data)
            if statuses.get(429, 0) >= 50:
                break
    finally:
        conn.close()
    assert statuses.get(200, 0) >= 1000, f"the burst passes first: {statuses}"
    assert statuses.get(429, 0) >= 50, statuses
    assert limited_body["status"] is False and limited_body["server"] == "nginx", limited_body
    assert "too many requests" in limited_body["message"], limited_body
