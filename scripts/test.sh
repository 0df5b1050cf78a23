#!/usr/bin/env bash
# The whole test suite: set-up, unit tests (swift test), then integration tests with real nginx, master and
# replicas on loopback (pytest). Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== swift test"
set +e
swift test 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write '
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "swift test failed"; exit "$status"; }
echo "== integration tests (pytest)"
KV_BIN_DIR="$(swift build -c release --show-bin-path)" python3 -m pytest -q -p no:cacheprovider Tests/integration "$@"
