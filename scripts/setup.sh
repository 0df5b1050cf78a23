#!/usr/bin/env bash
# Installs what kv needs on Debian 12 (system packages, Python test modules) and builds it.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libfcgi-dev libyaml-dev nginx-light openssl pkg-config python3-yaml python3-pytest wrk; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The python3 on PATH may not be Debian's (pyenv); make sure it has the modules too.
python3 -c 'import yaml, pytest' 2>/dev/null || python3 -m pip install -q pyyaml pytest
python3 -c 'import openapi_spec_validator, jsonschema' 2>/dev/null || python3 -m pip install -q openapi-spec-validator

# The binaries the cluster and the integration tests run are release builds (unit tests build debug).
echo "setup: building release binaries (swift build -c release)"
quiet='^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write|^Fetching|^Fetched|^Computing|^Computed|^Creating working copy|^Working copy'
swift build -c release 2>&1 | { grep -Ev "$quiet" || true; }
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "setup: swift build failed"; exit 1; }
test -x "$(swift build -c release --show-bin-path)/kv-master"
