#!/usr/bin/env bash
# The dev cluster on loopback: nginx on 127.0.0.1:8080 -> kv-master -> the replicas in cluster.yaml.
#   scripts/cluster.sh            set up (packages, build) and start, then print curl examples
#   scripts/cluster.sh stop       stop what start started (by PID)
#   scripts/cluster.sh status     which processes are running
#   scripts/cluster.sh reload     after editing cluster.yaml: SIGHUP to each replica, then the master's reload
#   scripts/cluster.sh stop-replica r2 | kill-replica r2 | start-replica r2   one replica (SIGTERM / SIGKILL / start)
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:-start}"
shift || true
if [ "$command" = "start" ]; then
    scripts/setup.sh
fi
# setup.sh's virtualenv (Debian's python3 with PyYAML); stop/status before any start fall back to Debian's python3.
py=.venv/bin/python
[ -x "$py" ] || py=/usr/bin/python3
KV_BIN_DIR="$(swift build -c release --show-bin-path)" exec "$py" scripts/kvcluster.py "$command" "$@"
