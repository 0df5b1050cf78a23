#!/usr/bin/env bash
# The whole test suite: set-up, unit tests (swift test), then with pytest the integration tests (real nginx,
# master and replicas on loopback) and the systemd tests (scripts/install.sh and the units under a real systemd
# booted in private namespaces). Where namespaces cannot be created (not root, no systemd) the systemd tests skip
# and say why; with KV_FAIL_ON_SKIP=1 (.ci/run sets it) every skip is a failure instead.
# Every test has a time bound (pytest-timeout), so a hung test fails instead of eating CI's time.
# Exits non-zero if anything fails; prints how long each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
report() {
    echo "== scripts/test.sh took $((SECONDS - started)) s (set-up ${setup_s:-?} s, swift test ${unit_s:-?} s," \
        "pytest ${pytest_s:-?} s)"
}
trap report EXIT
scripts/setup.sh
setup_s=$((SECONDS - started))
echo "== swift test"
mark=$SECONDS
set +e
SWIFT_DETERMINISTIC_HASHING=1 swift test 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]|^Building for|^Compiling|^Write '
status=${PIPESTATUS[0]}
set -e
unit_s=$((SECONDS - mark))
[ "$status" -eq 0 ] || { echo "swift test failed"; exit "$status"; }
echo "== integration and systemd tests (pytest)"
skips=()
[ "${KV_FAIL_ON_SKIP:-0}" = 1 ] && skips=(--fail-on-skip)
mark=$SECONDS
set +e
KV_BIN_DIR="$(swift build -c release --show-bin-path)" .venv/bin/python -m pytest -q -p no:cacheprovider -rs \
    --timeout=900 --durations=15 ${skips[@]+"${skips[@]}"} Tests/integration Tests/systemd "$@"
status=$?
set -e
pytest_s=$((SECONDS - mark))
exit "$status"
