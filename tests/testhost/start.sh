#!/bin/bash
# Start one test host and supervise it until it is killed.
#
# Usage: start.sh DIR ROOT PORT DISTRO
#   DIR     an empty directory owned by this host (the caller removes it)
#   ROOT    the cached root filesystem printed by build-root.sh (read-only lower layer)
#   PORT    the 127.0.0.1 port sshd listens on
#   DISTRO  debian12 | ubuntu2204-standin (the Debian root with Ubuntu 22.04's os-release)
# Environment:
#   TESTHOST_OWNER  pid whose exit shuts the host down and removes DIR (default: the parent)
#   IMAGE_PROVISION_TESTHOST_REBOOT_DELAY  seconds from the reboot's kill to sshd's return (default 1)
#
# The host runs in its own mount, PID and UTS namespaces (it shares the machine's
# network namespace) over a fresh overlay of ROOT:
#   DIR/upper, DIR/work   the overlay's writable layer
#   DIR/merged            the host's / (sshd and every command run chrooted here)
#   DIR/ctl               the harness's side: logs, keys, requests, state
#     supervisor.pid      outer pid of the supervisor (written once the host is set up)
#     client_ed25519_key  client key authorized for root, admin, ubuntu and pwuser
#     host_ed25519_key.pub, pwuser_password, boot_id, reboots, sshd.log
#     req-kill-sshd, req-restart-sshd  requests: created by the harness, removed when done
# This script, run as PID 1 of the PID namespace, is the supervisor: it runs
# sshd -D -e and performs reboots asked for by the reboot/shutdown stand-ins
# (they create /run/standin/reboot-request inside the host).
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "start.sh: $*" >&2; exit 1; }

if [ "${1:-}" != --supervise ]; then
    [ $# -eq 4 ] || die "usage: start.sh DIR ROOT PORT DISTRO"
    [ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, overlayfs, chroot)"
    for tool in unshare nsenter mount umount chroot; do
        command -v "$tool" >/dev/null || die "missing prerequisite '$tool' (apt-get install util-linux coreutils)"
    done
    [ -d "$2/usr" ] || die "no root filesystem at '$2' (run build-root.sh)"
    case $4 in debian12 | ubuntu2204-standin) ;; *) die "unknown distro '$4'" ;; esac
    mkdir -p "$1/ctl"
    export TESTHOST_OWNER=${TESTHOST_OWNER:-$PPID}
    exec unshare --mount --pid --uts --fork --kill-child --propagation private \
        -- "$BASH" "$here/start.sh" --supervise "$@"
fi
shift

dir=$1 root=$2 port=$3 distro=$4
ctl=$dir/ctl
m=$dir/merged
owner=$TESTHOST_OWNER
delay=${IMAGE_PROVISION_TESTHOST_REBOOT_DELAY:-1}
chroot_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "start.sh[$(date +%T.%N | cut -c1-12)]: $*" >&2; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# `kill -KILL -1` below must never run outside a PID namespace.
[ $$ -eq 1 ] || die "the supervisor must be PID 1 of a new PID namespace"

# A sleep without forking, so no stray process shows up while we wait for
# the host's processes to be gone. Also used as the main loop's tick.
mkfifo "$ctl/tick"
exec 8<>"$ctl/tick"
pause() { read -r -t "$1" -u 8 _ || true; }

in_root() { env -i PATH="$chroot_path" HOME=/root LANG=C.UTF-8 chroot "$m" "$@" 8>&-; }

# ---- the filesystem -------------------------------------------------------
mkdir -p "$dir/upper" "$dir/work" "$m"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$m"
mount -t proc proc "$m/proc"
# The kernel is the machine's: keep the host from changing it (as Docker does).
mount --bind "$m/proc/sys" "$m/proc/sys"
mount -o remount,bind,ro "$m/proc/sys"
[ ! -e "$m/proc/sysrq-trigger" ] || mount --bind /dev/null "$m/proc/sysrq-trigger"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys"
mount -t tmpfs -o mode=0755,nosuid,size=16m tmpfs "$m/dev"
for node in null zero full random urandom tty; do
    : >"$m/dev/$node"
    mount --bind "/dev/$node" "$m/dev/$node"
done
mkdir "$m/dev/pts" "$m/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$m/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
ln -s pts/ptmx "$m/dev/ptmx"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"

mount_run() {
    mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs "$m/run"
    mkdir -p "$m/run/lock" "$m/run/sshd" "$m/run/standin"
    chmod 1777 "$m/run/lock"
}
mount_run

# A boot id of its own, bind-mounted over the procfs file.
new_boot_id() {
    local id
    read -r id </proc/sys/kernel/random/uuid
    echo "$id" >"$ctl/boot_id.new"
    chmod 0444 "$ctl/boot_id.new"
    mv -f "$ctl/boot_id.new" "$ctl/boot_id"
    umount "$m/proc/sys/kernel/random/boot_id" 2>/dev/null || true
    mount --bind "$ctl/boot_id" "$m/proc/sys/kernel/random/boot_id"
}
new_boot_id

# ---- the host's identity and users ----------------------------------------
hostname=image-testhost
echo "$hostname" >/proc/sys/kernel/hostname
echo "$hostname" >"$m/etc/hostname"
printf '%s\n' "127.0.0.1 localhost" "127.0.1.1 $hostname" \
    "::1 localhost ip6-localhost ip6-loopback" >"$m/etc/hosts"
# Same network namespace as the machine, so the same resolver.
rm -f "$m/etc/resolv.conf"
cat /etc/resolv.conf >"$m/etc/resolv.conf"

if [ "$distro" = ubuntu2204-standin ]; then
    # Stand-in: a Debian 12 root that says it is Ubuntu 22.04 (the Ubuntu
    # archive is not reachable from here). /etc/os-release links to this file.
    install -m 0644 "$here/os-release.ubuntu-22.04" "$m/usr/lib/os-release"
    printf '%s\n' DISTRIB_ID=Ubuntu DISTRIB_RELEASE=22.04 DISTRIB_CODENAME=jammy \
        'DISTRIB_DESCRIPTION="Ubuntu 22.04.5 LTS"' >"$m/etc/lsb-release"
    echo "bookworm/sid" >"$m/etc/debian_version"
fi

for name in reboot shutdown; do
    install -m 0755 "$here/reboot-standin.sh" "$m/usr/sbin/$name"
done
mkdir -p "$m/var/log/standin" "$m/var/lib/standin"
# Stand-ins record calls from any user.
install -m 0666 /dev/null "$m/var/log/standin/calls.log"
echo 0 >"$m/var/lib/standin/reboots"
echo 0 >"$ctl/reboots"

head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$ctl/pwuser_password"
chmod 0600 "$ctl/pwuser_password"

# Keys are made inside the root (its ssh-keygen), so the machine needs no OpenSSH.
in_root /bin/bash -euo pipefail -s <<'SETUP'
ssh-keygen -q -t ed25519 -N '' -C testhost-host -f /etc/ssh/ssh_host_ed25519_key
ssh-keygen -q -t ed25519 -N '' -C testhost-client -f /run/client_ed25519_key
for user in root admin ubuntu pwuser; do
    home=$(getent passwd "$user" | cut -d: -f6)
    install -m 0600 -o "$user" -g "$user" /run/client_ed25519_key.pub "$home/.ssh/authorized_keys"
done
SETUP
printf 'pwuser:%s\n' "$(cat "$ctl/pwuser_password")" | in_root chpasswd
mv "$m/run/client_ed25519_key" "$m/run/client_ed25519_key.pub" "$ctl/"
cp "$m/etc/ssh/ssh_host_ed25519_key.pub" "$ctl/host_ed25519_key.pub"

# ---- sshd and the reboot stand-in -------------------------------------------
sshd_pid=
start_sshd() {
    mkdir -p "$m/run/sshd"
    log "starting sshd on 127.0.0.1:$port"
    (
        exec 8>&- </dev/null >>"$ctl/sshd.log" 2>&1
        exec env -i PATH="$chroot_path" LANG=C.UTF-8 \
            chroot "$m" /usr/sbin/sshd -D -e -o "ListenAddress=127.0.0.1:$port"
    ) &
    sshd_pid=$!
}

# Processes of the host (namespace pids) other than this one, zombies aside,
# into the array `procs`; with an argument, only that pid and its descendants.
# Builtins only: a forked helper would count itself.
procs=()
list_procs() {
    local d stat rest pid state ppid
    local -A parent=()
    procs=()
    for d in "$m"/proc/[0-9]*; do
        pid=${d##*/}
        [ "$pid" -ne 1 ] || continue
        read -r stat <"$d/stat" 2>/dev/null || continue
        rest=${stat##*) }
        read -r state ppid _ <<<"$rest"
        [ "$state" != Z ] || continue
        parent[$pid]=$ppid
    done
    if [ $# -eq 0 ]; then
        procs=("${!parent[@]}")
        return
    fi
    local -A keep=([$1]=1)
    local grew=1
    while [ $grew -eq 1 ]; do
        grew=0
        for pid in "${!parent[@]}"; do
            if [ -z "${keep[$pid]:-}" ] && [ -n "${keep[${parent[$pid]}]:-}" ]; then
                keep[$pid]=1
                grew=1
            fi
        done
    done
    for pid in "${!keep[@]}"; do
        [ -z "${parent[$pid]:-}" ] || procs+=("$pid")
    done
}

# Kill the given processes (all of the host's when none) and wait until they are gone.
kill_all() {
    local i n=-1
    if [ $# -gt 0 ]; then
        # A tree is stopped first, whole, until a listing finds nothing new:
        # a process forked between a listing and the kill would be
        # reparented to this supervisor when its parent dies, and no later
        # listing of the tree would find it (a killed dpkg's child finishing
        # its configure, say). Stopped, nothing forks; then all are killed.
        for ((i = 1; i <= 50; i++)); do
            list_procs "$@"
            [ "${#procs[@]}" -ne "$n" ] || break
            n=${#procs[@]}
            [ "$n" -eq 0 ] || kill -STOP "${procs[@]}" 2>/dev/null || true
        done
    fi
    for ((i = 1; i <= 100; i++)); do
        list_procs "$@"
        [ ${#procs[@]} -gt 0 ] || return 0
        if [ $# -eq 0 ]; then
            kill -KILL -1 2>/dev/null || true
        else
            kill -KILL "${procs[@]}" 2>/dev/null || true
        fi
        pause 0.02
        [ "$i" -lt 100 ] || log "processes still alive after kill: ${procs[*]}"
    done
}

kill_sshd() {
    if [ -n "$sshd_pid" ]; then
        log "killing sshd and its children"
        kill_all "$sshd_pid"
        wait "$sshd_pid" 2>/dev/null || true
        sshd_pid=
    fi
}

restart_sshd() {
    if [ -n "$sshd_pid" ]; then
        # Like `systemctl restart ssh`: the listener goes, sessions stay.
        log "stopping the sshd listener"
        kill -TERM "$sshd_pid" 2>/dev/null || true
        wait "$sshd_pid" 2>/dev/null || true
    fi
    start_sshd
}

do_reboot() {
    local n
    log "reboot requested"
    kill_all
    wait 2>/dev/null || true
    sshd_pid=
    read -r n <"$ctl/reboots"
    n=$((n + 1))
    echo "$n" >"$m/var/lib/standin/reboots"
    # Renamed into place: the tests poll this file and must never read
    # it half written (empty).
    echo "$n" >"$ctl/reboots.new"
    mv -f "$ctl/reboots.new" "$ctl/reboots"
    new_boot_id
    umount "$m/run"
    mount_run
    find "$m/tmp" -mindepth 1 -delete
    log "rebooted ($n), boot id $(cat "$ctl/boot_id"); sshd back in ${delay}s"
    pause "$delay"
    start_sshd
}

shutdown_host() {
    log "owner $owner is gone: shutting down and removing $dir"
    kill_all
    umount -R -l "$m" 2>/dev/null || true
    rm -rf "$dir"
    exit 0
}

start_sshd
read -r outer_pid _ </proc/self/stat
echo "$outer_pid" >"$ctl/supervisor.pid"
log "supervisor running (pid $outer_pid outside, 1 inside)"

while :; do
    [ -d "/proc/$owner" ] || shutdown_host
    [ ! -e "$m/run/standin/reboot-request" ] || do_reboot
    if [ -e "$ctl/req-kill-sshd" ]; then
        kill_sshd
        rm -f "$ctl/req-kill-sshd"
    fi
    if [ -e "$ctl/req-restart-sshd" ]; then
        restart_sshd
        rm -f "$ctl/req-restart-sshd"
    fi
    pause 0.05
done
