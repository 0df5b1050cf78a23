#!/usr/bin/env python3
"""Certificates for the cluster links' mutual TLS (`security.tls` in cluster.yaml), made with the openssl CLI.

    scripts/linkpki.py ca keys/link-tls                                  # a CA: ca.crt (give to every host), ca.key
    scripts/linkpki.py node keys/link-tls --ca keys/link-tls --san IP:10.0.0.2 --san DNS:r2.example
                                                                         # node.crt + node.key signed by that CA

Every process of a cluster verifies its peers against `ca_file`; a client also checks that the server's
certificate names the host it dialled (the `host` of a replica, the host of `master.query_listen`), so each
host's certificate lists its own addresses as subjectAltName entries. One certificate serves both directions
(extendedKeyUsage serverAuth and clientAuth). ECDSA P-256 keys; the private key files are mode 0600.
`scripts/cluster.sh` and the tests make a loopback CA and node certificate on first start when cluster.yaml
names files that do not exist yet (`ensure_dev_files`).
"""
import argparse
import os
import subprocess
import tempfile

DAYS = 825


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory, name="kv link CA"):
    """A self-signed CA in `directory`: ca.crt and ca.key (0600). Returns (crt, key)."""
    os.makedirs(directory, exist_ok=True)
    crt, key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", str(DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", key, "-out", crt)
    os.chmod(key, 0o600)
    return crt, key


def make_node(directory, ca_directory, sans=("IP:127.0.0.1", "DNS:localhost"), name="node", common_name="kv node"):
    """`name`.crt and `name`.key (0600) in `directory`, signed by the CA in `ca_directory`. Returns (crt, key)."""
    os.makedirs(directory, exist_ok=True)
    crt, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    with tempfile.TemporaryDirectory() as scratch:
        csr, ext = os.path.join(scratch, "node.csr"), os.path.join(scratch, "ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", f"/CN={common_name}", "-keyout", key, "-out", csr)
        os.chmod(key, 0o600)
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca_directory, "ca.crt"),
                 "-CAkey", os.path.join(ca_directory, "ca.key"), "-CAcreateserial",
                 "-CAserial", os.path.join(scratch, "ca.srl"), "-days", str(DAYS), "-extfile", ext, "-out", crt)
    return crt, key


def tls_files(config, config_dir):
    """(cert_file, key_file, ca_file) of cluster.yaml's `security.tls`, absolute; None without that section."""
    tls = (config.get("security") or {}).get("tls")
    if not tls:
        return None
    return tuple(os.path.join(config_dir, tls[name]) for name in ("cert_file", "key_file", "ca_file"))


def ensure_dev_files(config, config_dir):
    """For a loopback dev or test cluster: when `security.tls` names files none of which exist, makes a CA beside
    `ca_file` and a node certificate for 127.0.0.1 and localhost at `cert_file`/`key_file`."""
    files = tls_files(config, config_dir)
    if files is None or any(os.path.exists(path) for path in files):
        return
    cert_file, key_file, ca_file = files
    ca_dir = os.path.dirname(ca_file)
    crt, key = make_ca(ca_dir)
    if crt != ca_file:
        os.replace(crt, ca_file)
    node_dir = os.path.dirname(cert_file)
    made_crt, made_key = make_node(node_dir, ca_dir)
    os.replace(made_crt, cert_file)
    os.replace(made_key, key_file)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("ca", help="make a CA (ca.crt, ca.key) in DIR")
    ca.add_argument("dir")
    node = sub.add_parser("node", help="make node.crt and node.key in DIR, signed by the CA in --ca")
    node.add_argument("dir")
    node.add_argument("--ca", required=True, help="the directory holding ca.crt and ca.key")
    node.add_argument("--san", action="append", help="a subjectAltName entry (IP:10.0.0.2, DNS:r2.example); repeat")
    node.add_argument("--name", default="node", help="file name stem (default node)")
    args = parser.parse_args()
    if args.command == "ca":
        print(*make_ca(args.dir))
    else:
        print(*make_node(args.dir, args.ca, sans=args.san or ("IP:127.0.0.1", "DNS:localhost"), name=args.name))


if __name__ == "__main__":
    main()
