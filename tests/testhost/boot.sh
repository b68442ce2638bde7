#!/bin/bash
# Boot one test host under real systemd, with a network of its own, and keep
# it booted (rebooting it when it asks) until it is killed.
#
# Usage: boot.sh DIR ROOT ARCHIVE INDEX DISTRO
#   DIR      an empty directory owned by this host (the caller removes it)
#   ROOT     the booted root printed by `build-root.sh booted` (read-only lower layer)
#   ARCHIVE  the archive stand-in printed by build-archive.sh (bound read-only
#            at /srv/archive-standin, the host's only apt source)
#   INDEX    0..16383: the host's network, 10.96.0.0/16 and up in /30 steps:
#            the machine's end (ve-ith<INDEX>) .1, the host's (host0) .2
#   DISTRO   debian12 | ubuntu2204-standin
# Environment: TESTHOST_OWNER  pid whose exit shuts the host down (default: the parent)
#
# The host is systemd-nspawn booting systemd over a fresh overlay of ROOT, in a
# mount namespace of this script's own, with a veth pair for its network:
# real systemd, journald, networkd, sshd on port 22 of its address, and the
# packages the tool installs (real dockerd runs there; /var/lib/docker and
# /var/lib/containerd are directories of DIR bound in, since overlay2 cannot
# sit on an overlay). A reboot inside is real: systemd shuts down, nspawn
# exits 133 and this script boots it again (a new boot id, as nspawn gives
# each boot). DIR/ctl, the harness's side:
#   supervisor.pid  this script's pid        leader  the host's PID 1 (this boot; gone once it powers off)
#   address         the host's address       reboots count of reboots
#   client_ed25519_key, host_ed25519_key.pub, pwuser_password, console.log
# Exit codes: 3 when INDEX's network is taken (the caller picks another).
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "boot.sh: $*" >&2; exit 1; }

if [ "${BOOT_SH_SUPERVISE:-}" != 1 ]; then
    [ $# -eq 5 ] || die "usage: boot.sh DIR ROOT ARCHIVE INDEX DISTRO"
    [ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, overlayfs, nspawn)"
    for tool in unshare nsenter mount systemd-nspawn ip; do
        command -v "$tool" >/dev/null ||
            die "missing prerequisite '$tool' (apt-get install util-linux systemd-container iproute2)"
    done
    [ -x "$2/bin/systemctl" ] || die "no booted root at '$2' (run build-root.sh booted)"
    [ -e "$3/Packages" ] || die "no archive stand-in at '$3' (run build-archive.sh)"
    case $5 in debian12 | ubuntu2204-standin) ;; *) die "unknown distro '$5'" ;; esac
    mkdir -p "$1/ctl"
    export TESTHOST_OWNER=${TESTHOST_OWNER:-$PPID} BOOT_SH_SUPERVISE=1
    exec unshare --mount --propagation private -- "$BASH" "$here/boot.sh" "$@"
fi

dir=$1 root=$2 archive=$3 index=$4 distro=$5
ctl=$dir/ctl
m=$dir/merged
owner=$TESTHOST_OWNER
machine=ith$index
veth=ve-$machine
net=$((index / 64)).$(((index % 64) * 4))
IFS=. read -r third fourth <<<"$net"
outer_ip=10.$((96 + third / 256)).$((third % 256)).$((fourth + 1))
host_ip=10.$((96 + third / 256)).$((third % 256)).$((fourth + 2))

log() { echo "boot.sh[$(date +%T.%N | cut -c1-12)]: $*" >&2; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

if ip link show "$veth" >/dev/null 2>&1 || ip -4 addr show | grep -q " $outer_ip/"; then
    log "network $index is taken"
    exit 3
fi

# ---- the filesystem -------------------------------------------------------
mkdir -p "$dir/upper" "$dir/work" "$m" "$dir/docker" "$dir/containerd"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$m"

# ---- the host's identity, network, apt source and users --------------------
hostname=image-testhost
echo "$hostname" >"$m/etc/hostname"
printf '%s\n' "127.0.0.1 localhost" "127.0.1.1 $hostname" \
    "::1 localhost ip6-localhost ip6-loopback" >"$m/etc/hosts"
# No resolver: the host's network ends at the machine.
rm -f "$m/etc/resolv.conf"
: >"$m/etc/resolv.conf"
cat >"$m/etc/systemd/network/10-host0.network" <<NETWORK
[Match]
Name=host0

[Network]
Address=$host_ip/30
Gateway=$outer_ip
LinkLocalAddressing=no
NETWORK
echo "$host_ip" >"$ctl/address"

if [ "$distro" = ubuntu2204-standin ]; then
    # Stand-in: a Debian 12 root that says it is Ubuntu 22.04.
    install -m 0644 "$here/os-release.ubuntu-22.04" "$m/usr/lib/os-release"
    printf '%s\n' DISTRIB_ID=Ubuntu DISTRIB_RELEASE=22.04 DISTRIB_CODENAME=jammy \
        'DISTRIB_DESCRIPTION="Ubuntu 22.04.5 LTS"' >"$m/etc/lsb-release"
    echo "bookworm/sid" >"$m/etc/debian_version"
fi
# The archive stand-in is the only source (Debian's mirror is not reachable
# from the host's network).
mkdir -p "$m/srv/archive-standin"
printf '%s\n' "# image-provision test host: the archive stand-in (tests/testhost/build-archive.sh)" \
    "deb [trusted=yes] file:/srv/archive-standin ./" >"$m/etc/apt/sources.list"
mkdir -p "$m/var/log/standin" "$m/var/lib/standin"
install -m 0666 /dev/null "$m/var/log/standin/calls.log"
echo 0 >"$ctl/reboots"
# A container has no kernel command line of its own to make network units
# from, and this unit failed now and then, leaving the whole boot
# "degraded" (seen in CI; likely the cgroup remount's race, below): masked,
# as it would be on such a host.
ln -sfn /dev/null "$m/etc/systemd/system/systemd-network-generator.service"
# The root was built with every system user in place, and Debian has no
# systemd-update-done to mark /etc updated, so systemd-sysusers ran at every
# boot to find nothing to do (and once failed, leaving the boot "degraded":
# likely the cgroup remount's race, below). The packages the tool installs
# make their users from their own maintainer scripts.
ln -sfn /dev/null "$m/etc/systemd/system/systemd-sysusers.service"
# testhost-cgroups.service (build-root.sh) remounts the cgroup controllers
# read-write. A unit whose process was joining its cgroup while that ran
# failed with status 219/CGROUP (seen in CI: systemd-tmpfiles-setup-dev,
# leaving the boot "degraded"), so the remount runs alone: after the early
# units that start first, before every other unit of early boot (those
# after sysinit.target, Docker's too, come later anyway).
mkdir -p "$m/etc/systemd/system/testhost-cgroups.service.d"
cat >"$m/etc/systemd/system/testhost-cgroups.service.d/10-alone.conf" <<'ORDER'
[Unit]
After=systemd-journald.service systemd-modules-load.service systemd-remount-fs.service kmod-static-nodes.service
Before=systemd-tmpfiles-setup-dev-early.service systemd-tmpfiles-setup-dev.service systemd-sysctl.service
Before=systemd-journal-flush.service systemd-networkd.service systemd-tmpfiles-setup.service
Before=systemd-update-utmp.service systemd-random-seed.service systemd-machine-id-commit.service
Before=systemd-network-generator.service systemd-sysusers.service ldconfig.service
ORDER

head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$ctl/pwuser_password"
chmod 0600 "$ctl/pwuser_password"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$m" "$@"; }
in_root /bin/bash -euo pipefail -s <<'SETUP'
ssh-keygen -q -t ed25519 -N '' -C testhost-host -f /etc/ssh/ssh_host_ed25519_key
ssh-keygen -q -t ed25519 -N '' -C testhost-client -f /root/client_ed25519_key
for user in root admin ubuntu pwuser; do
    home=$(getent passwd "$user" | cut -d: -f6)
    install -m 0600 -o "$user" -g "$user" /root/client_ed25519_key.pub "$home/.ssh/authorized_keys"
done
SETUP
printf 'pwuser:%s\n' "$(cat "$ctl/pwuser_password")" | in_root chpasswd
mv "$m/root/client_ed25519_key" "$m/root/client_ed25519_key.pub" "$ctl/"
cp "$m/etc/ssh/ssh_host_ed25519_key.pub" "$ctl/host_ed25519_key.pub"

# ---- boot, and boot again after each reboot --------------------------------
nspawn_pid=
boot() {
    log "booting $machine ($host_ip)"
    rm -f "$ctl/leader"
    # --console=read-only: the host's console is read into console.log. A
    # passive console is read by no one: once its buffer fills, PID 1
    # blocks on its next status line and the host freezes (it did, after a
    # reboot, on the units the upkeep test starts).
    systemd-nspawn --quiet -D "$m" --boot --register=no --keep-unit -M "$machine" \
        --network-veth --console=read-only \
        --capability=all --system-call-filter='add_key keyctl bpf' \
        --bind="$dir/docker:/var/lib/docker" --bind="$dir/containerd:/var/lib/containerd" \
        --bind-ro="$archive:/srv/archive-standin" \
        </dev/null >>"$ctl/console.log" 2>&1 &
    nspawn_pid=$!
    local i leader=
    for ((i = 0; i < 500; i++)); do
        # nspawn's helper children come and go; PID 1 is the one running systemd.
        if [ -z "$leader" ]; then
            leader=$(ps -o pid=,comm= --ppid "$nspawn_pid" | awk '$2 == "systemd" { print $1; exit }' || true)
        fi
        if [ -n "$leader" ] && ip link show "$veth" >/dev/null 2>&1; then
            ip addr replace "$outer_ip/30" dev "$veth"
            ip link set "$veth" up
            echo "$leader" >"$ctl/leader"
            log "booted: PID 1 is $leader"
            return 0
        fi
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.02
    done
    log "nspawn did not start the host: $(tail -n 20 "$ctl/console.log")"
    return 1
}

shutdown_host() {
    log "$1: stopping the host"
    local leader
    leader=$(cat "$ctl/leader" 2>/dev/null || true)
    # PID 1 of the host's PID namespace: the kernel ends the rest with it.
    [ -z "$leader" ] || kill -KILL "$leader" 2>/dev/null || true
    [ -z "$nspawn_pid" ] || wait "$nspawn_pid" 2>/dev/null || true
    umount -R -l "$m" 2>/dev/null || true
    exit 0
}
trap 'shutdown_host "killed"' TERM INT

echo $$ >"$ctl/supervisor.pid"
boot
while :; do
    if ! kill -0 "$owner" 2>/dev/null; then
        # Killed (a runner's timeout): its TempDir will never remove the
        # host's directory (the root's upper layer, Docker's data), so this does.
        trap 'rm -rf -- "$dir"' EXIT
        shutdown_host "owner $owner is gone"
    fi
    if ! kill -0 "$nspawn_pid" 2>/dev/null; then
        rc=0
        wait "$nspawn_pid" || rc=$?
        if [ "$rc" -ne 133 ]; then
            # Powered off: its PID 1 is gone, and its number may be reused.
            rm -f "$ctl/leader"
            log "the host stopped (nspawn exited $rc)"
            exit 0
        fi
        n=$(($(cat "$ctl/reboots") + 1))
        # Renamed into place: the tests poll this file and must never
        # read it half written (empty).
        echo "$n" >"$ctl/reboots.new"
        mv -f "$ctl/reboots.new" "$ctl/reboots"
        log "the host rebooted ($n)"
        boot
    fi
    sleep 0.1
done
