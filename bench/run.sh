#!/usr/bin/env bash
# kv vs etcd, side by side on loopback (issue 7). One command; see docs/PERFORMANCE.md.
#
#   bench/run.sh                      # kv vs etcd vs ceiling: put/get at 1, 16, 64 connections, 10 s runs, 2 rounds
#   bench/run.sh --mode growth        # cost growth: 64 B / 4 KiB / 256 KiB values, 10k vs 1M keys
#   bench/run.sh --mode all           # both
#   bench/run.sh --link-tls           # kv with mutual TLS on its cluster links (security.tls)
#   bench/run.sh --smoke              # 2 s runs, 1 round: proves the harness end to end (numbers are not results)
#   bench/run.sh --help               # every option (durations, rounds, connections, key counts, ...)
#
# Installs what is missing from Debian (etcd-server, etcd-client, wrk, nginx, PyYAML; apt-get update first),
# builds the release binaries unless --no-build or KV_BIN_DIR is given, then runs bench/compare.py, which
# starts everything in a temporary directory, writes bench/results/<mode>-<timestamp>.{md,json} and stops
# every process it started (by PID), also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
mode=compare
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --mode=*) mode="${arg#--mode=}" ;;
        -h|--help) exec /usr/bin/python3 bench/compare.py --help ;;
    esac
done
prev=""
for arg in "$@"; do
    [ "$prev" = "--mode" ] && mode="$arg"
    prev="$arg"
done
args=()
for arg in "$@"; do
    [ "$arg" = "--no-build" ] || args+=("$arg")
done

need=()
for pkg in etcd-server etcd-client wrk nginx-light python3-yaml; do
    # nginx-light or any other nginx flavour will do
    if [ "$pkg" = nginx-light ] && command -v nginx >/dev/null 2>&1; then continue; fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "$build" -eq 1 ] && [ -z "${KV_BIN_DIR:-}" ]; then
    for pkg in libfcgi-dev libyaml-dev pkg-config; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Debian's etcd-server enables and starts its own etcd service on 127.0.0.1:2379 where systemd runs; the
    # benchmark does not use it (its etcd nodes run on free ports) and leaves it alone.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$mode" = growth ] || [ "$mode" = all ]; then
    # Optional: the PNG plot of the growth curves. Without matplotlib the tables are still written.
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || { SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-matplotlib \
            >/dev/null 2>&1; } || echo "bench: matplotlib not available; growth results without a PNG plot"
fi

if [ -z "${KV_BIN_DIR:-}" ]; then
    if [ "$build" -eq 1 ]; then
        echo "bench: building release binaries (swift build -c release)"
        quiet='^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write|^Fetching|^Fetched|^Computing|^Computed|^Creating working copy|^Working copy'
        swift build -c release 2>&1 | { grep -Ev "$quiet" || true; }
        [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "bench: swift build failed"; exit 1; }
    fi
    KV_BIN_DIR="$(swift build -c release --show-bin-path)"
    export KV_BIN_DIR
fi
for bin in kv-master kv-replicad; do
    [ -x "$KV_BIN_DIR/$bin" ] || { echo "bench: $KV_BIN_DIR/$bin missing (run without --no-build)"; exit 1; }
done

export KV_BENCH_COMMAND="bench/run.sh $*"
# Debian's python3 with its python3-yaml: the python3 first on PATH may be another (pyenv) without PyYAML.
exec /usr/bin/python3 bench/compare.py ${args[@]+"${args[@]}"}
