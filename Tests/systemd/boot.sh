#!/bin/sh
# PID 1 of a private PID + mount + network + UTS + IPC namespace (started by nsystemd.py through unshare):
# prepares a file system view in which systemd can boot without touching the host, then execs systemd.
#
#   boot.sh ID CONSOLE_LOG REPO_DIR BIN_DIR
#
# Host paths are shared (same root file system), so everything systemd, the units and scripts/install.sh
# write is diverted:
#   /run, /tmp, /var/tmp, /dev            fresh tmpfs (/dev with just the basic device nodes)
#   /etc, /usr/local, /var                overlays: reads see the host's files, writes go to a tmpfs
#   the cgroup tree                       a child group kvtest-ID of ours (removed by nsystemd.py)
# The repository and the binaries are bind-mounted at /run/kvtest/src and /run/kvtest/bin, so they stay
# visible even when they live under /tmp. Units that would change the machine (tmpfiles, sysusers, sysctl,
# modules, clock, timers, ...) are masked; journald keeps the journal in memory.
set -eu
id="$1" console="$2" repo="$3" bin="$4"

# 1. Our own cgroup (v1 name=systemd and/or v2), below the one we were started in: systemd takes the
#    group it runs in as its root, so concurrent test systems never share one.
while IFS=: read -r _ controllers path; do
    case "$controllers" in
        name=systemd) base=$(awk '$3 == "cgroup" && $4 ~ /name=systemd/ { print $2; exit }' /proc/self/mounts) ;;
        "") base=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts) ;;
        *) continue ;;
    esac
    [ -n "$base" ] || continue
    mkdir -p "$base$path/kvtest-$id"
    echo $$ >"$base$path/kvtest-$id/cgroup.procs"
done </proc/self/cgroup

# 2. /run, with the repository and the binaries bind-mounted before /tmp is hidden.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/kvtest/src /run/kvtest/bin /run/kvtest/overlay /run/kvtest/hostdev
mount --bind "$repo" /run/kvtest/src
mount --bind "$bin" /run/kvtest/bin

# 3. A private /dev: systemd and journald create sockets and links there (/dev/log, ...).
mount --rbind /dev /run/kvtest/hostdev
mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
for node in null zero full random urandom tty; do
    touch "/dev/$node"
    mount --bind "/run/kvtest/hostdev/$node" "/dev/$node"
done
touch /dev/console
mount --bind "$console" /dev/console        # systemd's own messages before journald runs
umount -l /run/kvtest/hostdev
mkdir /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr

# 4. Copy-on-write views of the directories systemd, nginx and scripts/install.sh write to.
for dir in /etc /usr/local /var; do
    name=$(echo "$dir" | tr / _)
    mkdir -p "/run/kvtest/overlay/$name/upper" "/run/kvtest/overlay/$name/work"
    mount -t overlay overlay \
        -o "lowerdir=$dir,upperdir=/run/kvtest/overlay/$name/upper,workdir=/run/kvtest/overlay/$name/work" "$dir"
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp

# 5. systemd configuration for this boot (in /run: gone with the namespace).
mkdir -p /run/systemd/system /run/systemd/system.conf.d /run/systemd/journald.conf.d
cat >/run/systemd/system.conf.d/kvtest.conf <<EOF
[Manager]
# No v1 resource controllers: their groups would be created outside our kvtest-$id group.
DefaultCPUAccounting=no
DefaultIOAccounting=no
DefaultBlockIOAccounting=no
DefaultMemoryAccounting=no
DefaultTasksAccounting=no
EOF
printf '[Journal]\nStorage=volatile\n' >/run/systemd/journald.conf.d/kvtest.conf
for unit in \
    systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.timer \
    systemd-sysusers.service systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    systemd-modules-load.service kmod-static-nodes.service systemd-remount-fs.service \
    systemd-update-utmp.service systemd-update-utmp-runlevel.service systemd-random-seed.service \
    systemd-machine-id-commit.service systemd-journal-flush.service systemd-firstboot.service \
    systemd-repart.service systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-pstore.service \
    systemd-timesyncd.service systemd-hwdb-update.service systemd-udevd.service systemd-udev-trigger.service \
    systemd-networkd.service systemd-resolved.service systemd-journald-audit.socket \
    systemd-ask-password-console.path timers.target getty.target console-getty.service \
    dev-hugepages.mount dev-mqueue.mount sys-kernel-config.mount sys-kernel-debug.mount \
    sys-kernel-tracing.mount sys-fs-fuse-connections.mount; do
    ln -sf /dev/null "/run/systemd/system/$unit"
done
cat >/run/systemd/system/kvtest.target <<EOF
[Unit]
Description=kv systemd test boot (journald, nginx)
Requires=basic.target
Wants=systemd-journald.service nginx.service
After=basic.target systemd-journald.service nginx.service
AllowIsolate=yes
EOF

# Container mode: systemd skips hardware, clock and kernel set-up it would otherwise do.
export container=kvtest
exec /lib/systemd/systemd --system --unit=kvtest.target
