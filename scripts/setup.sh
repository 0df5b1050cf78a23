#!/usr/bin/env bash
# Installs what kv needs on Debian 12 (system packages; the Python test modules in .venv) and builds it.
# Safe to run again: it installs only what is missing. systemd and util-linux give the systemd suite what it
# boots in namespaces; under CI that suite may not skip (Tests/conftest.py --fail-on-skip).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libfcgi-dev libyaml-dev nginx-light openssl pkg-config python3 python3-venv python3-yaml systemd \
    util-linux wrk; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The test modules go into a virtualenv made with Debian's python3: Debian's own refuses `pip install` outside
# one (PEP 668), and the python3 first on PATH may be anything (pyenv). Rebuilt when the requirements change.
stamp=".venv/requirements.sha256"
want="$(sha256sum Tests/requirements.txt | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: creating .venv (Tests/requirements.txt)"
    rm -rf .venv
    /usr/bin/python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r Tests/requirements.txt
    echo "$want" > "$stamp"
fi

# The binaries the cluster and the integration tests run are release builds (unit tests build debug).
echo "setup: building release binaries (swift build -c release)"
quiet='^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write|^Fetching|^Fetched|^Computing|^Computed|^Creating working copy|^Working copy'
swift build -c release 2>&1 | { grep -Ev "$quiet" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "setup: swift build failed"; exit 1; }
test -x "$(swift build -c release --show-bin-path)/kv-master"
