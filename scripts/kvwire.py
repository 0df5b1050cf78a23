#!/usr/bin/env python3
"""Speak the replica wire protocol by hand, authenticated: `scripts/kv-wire r1 ';get;key'`.

The ports of a cluster with `security.cluster_key_file` accept a connection only after the link handshake
(docs/ARCHITECTURE.md, Link authentication). This module does the client side with Python's own hmac and hashlib
(no package to install) and is what the tests and the benchmark use too. An operator holding only the operator
key (`--key-file`, made by `kv-wire --print-operator-key`) may send `get`, `stat` and `list`; with the cluster
key and `--role master`, anything (for repairs and tests; the master must be stopped first, or writes race it).

    scripts/kv-wire [--config cluster.yaml] r1 ';stat;;' ';get;k'      # lines as arguments
    printf ';get;a\\n;get;b\\n' | scripts/kv-wire r2                     # or one per line on stdin

With `security.tls` in cluster.yaml the connection is mutual TLS first, with the certificate, key and CA that
section names (Python's ssl module), and the replica's certificate must name the host dialled.
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import socket
import ssl
import struct
import sys

ROLES = ("master", "replica", "operator")


def read_key(path):
    with open(path) as f:
        text = f.read().strip()
    key = bytes.fromhex(text)
    if len(key) < 32:
        raise ValueError(f"{path}: a key has at least 64 hex digits")
    return key


def client_tls_context(config, config_dir, cert_file=None, key_file=None):
    """The ssl context for cluster links under cluster.yaml's `security.tls` (None without it): TLS 1.3, the
    server verified against `ca_file` and by host name or IP, this side's certificate presented.
    `cert_file`/`key_file` replace the configured pair (the tests present a foreign certificate this way)."""
    tls = (config.get("security") or {}).get("tls")
    if not tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(config_dir, tls["ca_file"]))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file or os.path.join(config_dir, tls["cert_file"]),
                            key_file or os.path.join(config_dir, tls["key_file"]))
    return context


def role_key(cluster_key, role):
    return hmac.new(cluster_key, f"kv role key v1 {role}".encode(), hashlib.sha256).digest()


def proof(key, direction, role, client_id, server_id, epoch, client_nonce, server_nonce):
    message = bytearray(b"kv link v1")
    for field in (direction.encode(), role.encode(), client_id.encode(), server_id.encode()):
        message += struct.pack(">I", len(field)) + field
    message += struct.pack(">Q", epoch)
    for field in (client_nonce, server_nonce):
        message += struct.pack(">I", len(field)) + field
    return hmac.new(key, bytes(message), hashlib.sha256).digest()


class AuthError(Exception):
    pass


def handshake(file, key, role, client_id, expected_server=None, epoch=0):
    """Runs the client side on a socket file (`makefile("rwb")`); `key` is the role's key. Returns the server id."""
    nonce = secrets.token_bytes(16)
    epoch_field = str(epoch) if epoch else ""
    file.write(f"{epoch_field};hello;{role}:{client_id};{nonce.hex()}\n".encode())
    file.flush()
    challenge = _reply(file)
    server = challenge.get("server", "?")
    if not challenge.get("status"):
        raise AuthError(f"{server} refused: {challenge.get('message')}")
    if expected_server and server != expected_server:
        raise AuthError(f"reached {server} where {expected_server} was expected")
    server_nonce = bytes.fromhex(challenge.get("nonce", ""))
    expected = proof(key, "server", role, client_id, server, epoch, nonce, server_nonce)
    if not hmac.compare_digest(bytes.fromhex(challenge.get("proof", "")), expected):
        raise AuthError(f"{server} does not hold this cluster's key")
    answer = proof(key, "client", role, client_id, server, epoch, nonce, server_nonce)
    file.write(f"{epoch_field};auth;{role}:{client_id};{answer.hex()}\n".encode())
    file.flush()
    confirmation = _reply(file)
    if not confirmation.get("status"):
        raise AuthError(f"{server} refused: {confirmation.get('message')}")
    return server


def _reply(file):
    raw = file.readline()
    if not raw:
        raise AuthError("the server closed the connection during the handshake")
    return json.loads(raw)


class WireClient:
    """A connection speaking the replica wire protocol: send lines, read JSON reply lines. With `key` (a role's
    key) it authenticates first as `role`/`client_id`."""

    def __init__(self, host, port, timeout_s=5.0, key=None, role="master", client_id="m1", expected_server=None,
                 epoch=0, tls=None):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        if tls is not None:
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except Exception:
                self.sock.close()
                raise
        self.file = self.sock.makefile("rwb")
        self.server = None
        if key is not None:
            try:
                self.server = handshake(self.file, key, role, client_id, expected_server, epoch)
            except Exception:
                self.close()
                raise

    def call(self, *lines):
        for line in lines:
            self.file.write(line if isinstance(line, bytes) else line.encode())
            self.file.write(b"\n")
        self.file.flush()
        replies = []
        for _ in lines:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("replica closed the connection")
            replies.append(json.loads(raw))
        return replies

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cluster.yaml")
    parser.add_argument("--key-file", help="operator key file (default: the cluster key cluster.yaml names)")
    parser.add_argument("--role", choices=ROLES, default="operator")
    parser.add_argument("--id", default=os.environ.get("USER", "operator"), help="who you are, for the replica's log")
    parser.add_argument("--epoch", type=int, default=0,
                        help="the seq epoch to state as --role master (a replica fences any master older than its newest)")
    parser.add_argument("--print-operator-key", action="store_true",
                        help="print the operator key derived from the cluster key (give operators this, not the cluster key)")
    parser.add_argument("replica", nargs="?")
    parser.add_argument("lines", nargs="*")
    args = parser.parse_args()
    import yaml
    config_dir = os.path.dirname(os.path.abspath(args.config))
    with open(args.config) as f:
        config = yaml.safe_load(f)
    key_file = (config.get("security") or {}).get("cluster_key_file")
    cluster_key = read_key(os.path.join(config_dir, key_file)) if key_file and not args.key_file else None
    if args.print_operator_key:
        if cluster_key is None:
            sys.exit("kv-wire: --print-operator-key needs the cluster key (security.cluster_key_file)")
        print(role_key(cluster_key, "operator").hex())
        return
    if not args.replica:
        parser.error("name a replica")
    replica = next((r for r in config["replicas"] if r["id"] == args.replica), None)
    if replica is None:
        sys.exit(f"kv-wire: no replica {args.replica} in {args.config}")
    if args.key_file:
        key = bytes.fromhex(open(args.key_file).read().strip())
        if args.role != "operator":
            sys.exit("kv-wire: an operator key proves the operator role only")
    else:
        key = role_key(cluster_key, args.role) if cluster_key else None
    lines = args.lines or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    client = WireClient(replica["host"], int(replica["port"]), key=key, role=args.role, client_id=args.id,
                        expected_server=replica["id"], epoch=args.epoch, tls=client_tls_context(config, config_dir))
    try:
        for reply in client.call(*lines):
            print(json.dumps(reply))
    finally:
        client.close()


if __name__ == "__main__":
    try:
        main()
    except (AuthError, OSError, ValueError) as error:
        sys.exit(f"kv-wire: {error}")
