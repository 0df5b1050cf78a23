#!/usr/bin/env bash
# The whole test suite: set-up, unit tests (swift test), then with pytest the integration tests (real nginx,
# master and replicas on loopback) and the systemd tests (scripts/install.sh and the units under a real systemd
# booted in private namespaces; skipped, saying why, only where namespaces cannot be created).
# Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== swift test"
set +e
SWIFT_DETERMINISTIC_HASHING=1 swift test 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write '
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "swift test failed"; exit "$status"; }
echo "== integration and systemd tests (pytest)"
KV_BIN_DIR="$(swift build -c release --show-bin-path)" python3 -m pytest -q -p no:cacheprovider -rs Tests/integration \
    Tests/systemd "$@"
