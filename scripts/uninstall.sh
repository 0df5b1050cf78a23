#!/usr/bin/env bash
# Removes what scripts/install.sh installed: stops and disables the kv units, deletes them, the binaries, the
# docs and the nginx site (then reloads nginx). Keeps /etc/kv (configuration) and /var/lib/kv (data: replica
# logs and snapshots, the master's decision log and epoch); delete those by hand if you mean to.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "uninstall: run as root (sudo $0)" >&2; exit 1; }

UNITS="kv.target kv-master.socket kv-master.service kv-replica@.service"
if [ -d /run/systemd/system ]; then
    # Every loaded kv unit, including replica instances that are no longer enabled; not the master's on a
    # replica-only host (install.sh --role replica), where kv.target's Wants= names units that are not there.
    mapfile -t loaded < <(systemctl list-units --all --plain --no-legend 'kv.target' 'kv-master.*' 'kv-replica@*' \
                          | awk '$2 != "not-found" { print $1 }')
    if [ ${#loaded[@]} -gt 0 ]; then
        systemctl stop "${loaded[@]}"
        echo "uninstall: stopped ${loaded[*]}"
    fi
    mapfile -t enabled < <(cd /etc/systemd/system && ls -d kv.target.wants/kv-replica@*.service 2>/dev/null \
                           | sed 's|.*/||')
    systemctl disable --quiet kv.target kv-master.socket kv-master.service "${enabled[@]}" 2>/dev/null || true
fi
for u in $UNITS; do rm -f "/etc/systemd/system/$u"; done
rm -rf /etc/systemd/system/kv.target.wants
rm -f /usr/local/bin/kv-master /usr/local/bin/kv-replicad
rm -rf /usr/local/share/doc/kv
rm -f /etc/nginx/sites-enabled/kv.conf /etc/nginx/sites-available/kv.conf /etc/nginx/sites-available/kv.conf.dist
rm -f /etc/nginx/snippets/kv-locations.conf /etc/nginx/snippets/kv-locations.conf.dist
echo "uninstall: removed the units, /usr/local/bin/kv-master, /usr/local/bin/kv-replicad, the nginx site"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed 'kv-master.*' 'kv-replica@*' 2>/dev/null || true
    if systemctl is-active --quiet nginx.service; then
        systemctl reload nginx.service
        echo "uninstall: nginx reloaded"
    fi
fi
echo "uninstall: kept /etc/kv and the data in /var/lib/kv"
