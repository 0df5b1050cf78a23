#!/usr/bin/env python3
"""Bearer tokens of the kv HTTP API: make, list and revoke them in the tokens file cluster.yaml names
(security.tokens_file). The file holds only each token's SHA-256; a new token is printed once, here.

    scripts/kv-token add ops admin                       # may do everything (/admin/*, /status?verify=1)
    scripts/kv-token add app read-write --prefix app/     # read and write keys under app/
    scripts/kv-token add dash read-only [--prefix p/]     # read (everything, or under the prefixes)
    scripts/kv-token list
    scripts/kv-token remove app                           # then reload: systemctl reload kv-master

The master reads the file at start and at every reload (POST /admin/reload, SIGHUP)."""
import argparse
import hashlib
import os
import secrets
import sys
import tempfile

ROLES = ("read-only", "read-write", "admin")


def tokens_path(config_path):
    import yaml
    with open(config_path) as f:
        config = yaml.safe_load(f)
    name = (config.get("security") or {}).get("tokens_file")
    if not name:
        sys.exit(f"kv-token: {config_path} has no security.tokens_file; add one (e.g. tokens_file: tokens.yaml) "
                 "or pass --file")
    return name if name.startswith("/") else os.path.join(os.path.dirname(os.path.abspath(config_path)), name)


def load(path):
    import yaml
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return (yaml.safe_load(f) or {}).get("tokens") or []


def save(path, tokens):
    import yaml
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tokens-")
    with os.fdopen(fd, "w") as f:
        f.write("# kv HTTP API tokens (SHA-256 of each; scripts/kv-token makes them). Reload the master after editing.\n")
        yaml.safe_dump({"tokens": tokens}, f, sort_keys=False, default_flow_style=None)
        f.flush()
        os.fsync(f.fileno())
    # Hashes only: readable by the master's user; writable by the owner alone.
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def make_token():
    return "kv_" + secrets.token_hex(32)


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def entry(name, role, prefixes, token):
    item = {"name": name, "role": role, "sha256": digest(token)}
    if prefixes:
        item["prefixes"] = list(prefixes)
    return item


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cluster.yaml")
    parser.add_argument("--file", help="the tokens file (default: the one cluster.yaml names)")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="make a token and print it")
    add.add_argument("name")
    add.add_argument("role", choices=ROLES)
    add.add_argument("--prefix", action="append", default=[], help="a key prefix it may use (repeat for more)")
    remove = sub.add_parser("remove", help="revoke a token")
    remove.add_argument("name")
    sub.add_parser("list", help="the tokens in the file (names, roles, prefixes)")
    args = parser.parse_args()
    path = args.file or tokens_path(args.config)
    tokens = load(path)
    if args.command == "add":
        if args.role == "read-write" and not args.prefix:
            sys.exit("kv-token: a read-write token needs --prefix (the keys it may write); use admin for all keys")
        if args.role == "admin" and args.prefix:
            sys.exit("kv-token: an admin token may do everything; --prefix does not apply")
        if any(t.get("name") == args.name for t in tokens):
            sys.exit(f"kv-token: {path} already has a token named {args.name}; remove it first")
        token = make_token()
        save(path, tokens + [entry(args.name, args.role, args.prefix, token)])
        print(token)
        print(f"kv-token: added {args.name} ({args.role}) to {path}; reload the master to use it", file=sys.stderr)
    elif args.command == "remove":
        kept = [t for t in tokens if t.get("name") != args.name]
        if len(kept) == len(tokens):
            sys.exit(f"kv-token: {path} has no token named {args.name}")
        save(path, kept)
        print(f"kv-token: removed {args.name} from {path}; reload the master to revoke it", file=sys.stderr)
    else:
        for t in tokens:
            print(f"{t.get('name')}\t{t.get('role')}\t{','.join(t.get('prefixes') or []) or '*'}")


if __name__ == "__main__":
    main()
