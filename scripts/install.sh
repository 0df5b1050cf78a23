#!/usr/bin/env bash
# Installs kv as systemd services on Debian 12 (run as root, from the repository):
#   sudo scripts/install.sh                          everything on this host (the dev-style single machine)
#   sudo scripts/install.sh --role master            the master and nginx only (the HTTP entry point)
#   sudo scripts/install.sh --role replica --id r2   replica r2 only (repeat --id, or --id r2,r3)
#   (--role master,replica --id r1: both on one host of several; docs/OPERATIONS.md, Running on several machines)
# What it installs, as the role needs:
#   /usr/local/bin/kv-master, /usr/local/bin/kv-replicad      release binaries (built first if missing)
#   /etc/systemd/system/kv-master.{service,socket}, kv-replica@.service, kv.target
#   /etc/kv/cluster.yaml            only if absent: master on /run/kv/master.sock, data in /var/lib/kv/<id>
#                                   (a replica-only host needs the cluster's file copied here first)
#   /etc/kv/cluster.key             only if absent: the cluster key (root, mode 0600); a replica-only host needs
#                                   the master host's copy
#   /etc/kv/tokens.yaml, admin.token  only if absent: HTTP API tokens (digests, 0644) and the admin token (0600)
#   /etc/nginx/sites-available/kv.conf (+ sites-enabled link)   only if absent: 127.0.0.1:8080 and :8443 (TLS,
#                                   HTTP/2) -> the socket; /etc/nginx/snippets/kv-locations.conf, what both serve
#   /etc/kv/tls/server.{crt,key}    only if absent: a self-signed certificate for :8443 (replace with yours)
#   /usr/local/share/doc/kv/OPERATIONS.md
# then, if systemd runs: daemon-reload, enable kv.target, the socket and the master (role master), one
# kv-replica@<id> per replica (role replica: the ids given; all: every replica in /etc/kv/cluster.yaml), and
# reload nginx. Nothing is started: `systemctl start kv.target` does that.
# Existing /etc/kv/cluster.yaml and nginx site are kept (the new version is written next to them as *.dist).
# Safe to run again (upgrade: binaries and units are replaced; `systemctl restart kv.target` to use them).
# scripts/uninstall.sh removes all of it except /etc/kv and the data in /var/lib/kv.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}
roles="all"
ids=()
while [ $# -gt 0 ]; do
    case "$1" in
        --role) [ $# -ge 2 ] || { usage >&2; exit 2; }; roles="$2"; shift 2 ;;
        --role=*) roles="${1#--role=}"; shift ;;
        --id) [ $# -ge 2 ] || { usage >&2; exit 2; }; IFS=, read -r -a more <<<"$2"; ids+=("${more[@]}"); shift 2 ;;
        --id=*) IFS=, read -r -a more <<<"${1#--id=}"; ids+=("${more[@]}"); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done
want_master=no
want_replica=no
case "$roles" in
    all) want_master=yes; want_replica=yes ;;
    master) want_master=yes ;;
    replica) want_replica=yes ;;
    master,replica|replica,master) want_master=yes; want_replica=yes ;;
    *) echo "install: --role is all, master, replica or master,replica (not '$roles')" >&2; exit 2 ;;
esac
if [ "$roles" = "all" ] && [ ${#ids[@]} -gt 0 ]; then
    echo "install: --id goes with --role replica (or master,replica); --role all installs every replica" >&2
    exit 2
fi
if [ "$roles" != "all" ] && [ "$want_replica" = yes ] && [ ${#ids[@]} -eq 0 ]; then
    echo "install: --role $roles needs the replicas of this host: --id r2 (repeat it, or --id r2,r3)" >&2
    exit 2
fi

[ "$(id -u)" -eq 0 ] || { echo "install: run as root (sudo $0)" >&2; exit 1; }

BIN_DIR="${KV_BIN_DIR:-}"
if [ -z "$BIN_DIR" ]; then
    if ! BIN_DIR="$(swift build -c release --show-bin-path 2>/dev/null)" || [ ! -x "$BIN_DIR/kv-master" ]; then
        scripts/setup.sh                     # packages + release build
        BIN_DIR="$(swift build -c release --show-bin-path)"
    fi
fi
binaries=()
UNITS="kv.target"
[ "$want_master" = no ] || { binaries+=(kv-master); UNITS="kv-master.service kv-master.socket $UNITS"; }
[ "$want_replica" = no ] || { binaries+=(kv-replicad); UNITS="kv-replica@.service $UNITS"; }
for b in "${binaries[@]}"; do
    [ -x "$BIN_DIR/$b" ] || { echo "install: $BIN_DIR/$b missing (swift build -c release)" >&2; exit 1; }
    # They must run here: the Swift runtime libraries they load (RUNPATH) must be present.
    "$BIN_DIR/$b" --help >/dev/null || { echo "install: $BIN_DIR/$b does not run" >&2; exit 1; }
done
if [ "$want_master" = yes ]; then
    command -v nginx >/dev/null || { echo "install: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
    getent group www-data >/dev/null || { echo "install: group www-data (nginx's) does not exist" >&2; exit 1; }
elif [ ! -e /etc/kv/cluster.yaml ]; then
    echo "install: a replica-only host runs the cluster's own file: copy /etc/kv/cluster.yaml from the master's" \
        "host first (one file for every host)" >&2
    exit 1
fi

SOCKET=/run/kv/master.sock

# Writes stdin to $1 unless it exists with other content; then to $1.dist, and says so.
install_config() {
    local target="$1" tmp
    tmp="$(mktemp)"
    cat >"$tmp"
    if [ ! -e "$target" ]; then
        install -D -m 0644 "$tmp" "$target"
        echo "install: wrote $target"
    elif cmp -s "$tmp" "$target"; then
        echo "install: $target is up to date"
    else
        install -m 0644 "$tmp" "$target.dist"
        echo "install: kept your $target; the shipped version is $target.dist"
    fi
    rm -f "$tmp"
}

# Rewrites $1 with sed expression $2 and fails unless each of the patterns after it matched.
render() {
    local file="$1" script="$2" out
    shift 2
    out="$(sed -e "$script" "$file")"
    for want in "$@"; do
        grep -qF -- "$want" <<<"$out" || { echo "install: rendering $file: '$want' missing" >&2; exit 1; }
    done
    printf '%s\n' "$out"
}

install -d -m 0755 /usr/local/bin /etc/systemd/system /etc/kv /usr/local/share/doc/kv
for b in "${binaries[@]}"; do
    install -m 0755 "$BIN_DIR/$b" "/usr/local/bin/$b"
    echo "install: /usr/local/bin/$b (from $BIN_DIR)"
done
for u in $UNITS; do
    install -m 0644 "systemd/$u" "/etc/systemd/system/$u"
done
echo "install: /etc/systemd/system/{${UNITS// /,}}"
install -m 0644 docs/OPERATIONS.md /usr/local/share/doc/kv/OPERATIONS.md

# The cluster key: root's, mode 0600; each unit hands a copy to its dynamic user (ExecStartPre in the units).
KEY=/etc/kv/cluster.key
if [ ! -e "$KEY" ] && [ "$want_master" = no ] && grep -q '^  cluster_key_file:' /etc/kv/cluster.yaml; then
    # Every process of the cluster must hold the same key: a new one here would lock this host out.
    echo "install: $KEY is missing: copy it from the master's host (root, mode 0600: install -m 0600 cluster.key" \
        "$KEY), then run this again" >&2
    exit 1
fi
if [ ! -e "$KEY" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY.tmp" && mv "$KEY.tmp" "$KEY")
    echo "install: wrote $KEY (the cluster key; docs/OPERATIONS.md, Security)"
fi

# The HTTP API's tokens: the file holds SHA-256 digests only (readable by the master's dynamic user); the admin
# token itself goes to a root-only file for the operator (scripts/kv-token makes more).
TOKENS=/etc/kv/tokens.yaml
if [ "$want_master" = yes ] && [ ! -e "$TOKENS" ]; then
    token="kv_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    digest="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"
    (umask 077; printf '%s\n' "$token" >/etc/kv/admin.token)
    printf '# kv HTTP API tokens (SHA-256 of each; scripts/kv-token makes them). Reload the master after editing.\ntokens:\n- {name: admin, role: admin, sha256: %s}\n' \
        "$digest" >"$TOKENS.tmp"
    chmod 0644 "$TOKENS.tmp" && mv "$TOKENS.tmp" "$TOKENS"
    echo "install: wrote $TOKENS and the admin token /etc/kv/admin.token (curl -H \"Authorization: Bearer \$(cat /etc/kv/admin.token)\")"
fi

# Master only: the configuration (a replica-only host has the cluster's), the nginx site and certificate.
if [ "$want_master" = yes ]; then
# cluster.yaml: the repository's, with the master on the systemd socket, the data in the units' state
# directories (StateDirectory=kv/<id> -> /var/lib/kv/<id>), the cluster key and the tokens above.
config="$(render cluster.yaml "
1i # Installed by kv scripts/install.sh. Reload after editing: systemctl reload kv-master
s|^\(  listen:\) .*|\1 $SOCKET|
s|^\(  decision_log_dir:\) data/\(.*\)|\1 /var/lib/kv/\2|
s|^\(    data_dir:\) data/\(.*\)|\1 /var/lib/kv/\2|
s|^\(  cluster_key_file:\) .*|\1 $KEY\\
  tokens_file: $TOKENS|
" "listen: $SOCKET" "decision_log_dir: /var/lib/kv/master" "data_dir: /var/lib/kv/r1" "cluster_key_file: $KEY" \
    "tokens_file: $TOKENS")"
install_config /etc/kv/cluster.yaml <<<"$config"

site="$(render nginx/kv-site.conf "
s|server 127.0.0.1:9000;|server unix:$SOCKET;|
s|# master.listen in cluster.yaml.*|# kv-master.socket: systemd owns this socket (/etc/systemd/system/kv-master.socket)|
" "server unix:$SOCKET;")"
install_config /etc/nginx/sites-available/kv.conf <<<"$site"
install -d -m 0755 /etc/nginx/snippets
install_config /etc/nginx/snippets/kv-locations.conf <nginx/kv-locations.conf
ln -sfn ../sites-available/kv.conf /etc/nginx/sites-enabled/kv.conf
# Each watcher (blocking query or /watch stream) holds a client and an upstream connection, and Debian's nginx.conf
# allows 768 per worker: raised once, for watch.watchers_max (docs/OPERATIONS.md, Watch). A changed file is kept.
if grep -qE '^\s*worker_connections 768;' /etc/nginx/nginx.conf 2>/dev/null; then
    sed -i.kv-orig -E 's/^(\s*)worker_connections 768;/\1worker_connections 20480;/' /etc/nginx/nginx.conf
    grep -q '^worker_rlimit_nofile' /etc/nginx/nginx.conf \
        || sed -i '/^worker_processes/a worker_rlimit_nofile 65536;' /etc/nginx/nginx.conf
    echo "install: nginx worker_connections 768 -> 20480 for watchers (the old file: /etc/nginx/nginx.conf.kv-orig)"
fi

# The HTTPS listener's certificate: the operator's, in /etc/kv/tls; a self-signed one until there is one.
if [ ! -e /etc/kv/tls/server.crt ]; then
    install -d -m 0755 /etc/kv/tls
    (umask 077; openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$(hostname)" \
        -addext "subjectAltName=DNS:$(hostname),DNS:localhost,IP:127.0.0.1" \
        -keyout /etc/kv/tls/server.key -out /etc/kv/tls/server.crt 2>/dev/null)
    chmod 0644 /etc/kv/tls/server.crt
    echo "install: wrote a self-signed /etc/kv/tls/server.crt for https://:8443; replace it and server.key with yours"
fi
fi  # want_master

# The replica ids of the installed configuration: "  - id: r1" entries under "replicas:".
replica_ids() {
    awk '/^[^ #]/ { section = $1 } section == "replicas:" && $1 == "-" && $2 == "id:" { print $3 }' /etc/kv/cluster.yaml
}
if [ "$roles" = "all" ]; then
    mapfile -t ids < <(replica_ids)
    [ ${#ids[@]} -gt 0 ] || { echo "install: no replicas found in /etc/kv/cluster.yaml" >&2; exit 1; }
fi
instances=()
for id in "${ids[@]}"; do
    # The replica's own loader judges the file and its entry; the unit's sandbox lets it write only
    # /var/lib/kv/<id> (StateDirectory=kv/%i), so that must be its data_dir.
    line="$(/usr/local/bin/kv-replicad --config /etc/kv/cluster.yaml --id "$id" --check 2>&1)" \
        || { echo "install: replica $id: $line" >&2; exit 1; }
    case "$line" in
        *"data_dir /var/lib/kv/$id") ;;
        *) echo "install: replica $id: data_dir must be /var/lib/kv/$id under systemd (its unit may write only" \
               "there; elsewhere needs a drop-in with ReadWritePaths=): $line" >&2; exit 1 ;;
    esac
    echo "install: $line"
    instances+=("kv-replica@$id.service")
done

enable=(kv.target)
[ "$want_master" = no ] || enable+=(kv-master.socket kv-master.service)
enable+=("${instances[@]}")
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --quiet "${enable[@]}"
    echo "install: enabled ${enable[*]}"
    if [ "$want_master" = yes ]; then
        nginx -t -q
        if systemctl is-active --quiet nginx.service; then
            systemctl reload nginx.service
            echo "install: nginx reloaded"
        fi
    fi
else
    echo "install: systemd is not running; later: systemctl enable ${enable[*]}"
fi
echo "install: done. Start with: systemctl start kv.target"
[ "$want_master" = no ] || echo "install: then: curl -s http://127.0.0.1:8080/status"
