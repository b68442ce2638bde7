#!/bin/bash
# Build (or find) the cached Debian 12 root filesystem the test hosts run on.
#
# Usage: build-root.sh [plain|booted]
#   plain   (default) the chroot hosts' root (start.sh): no init system
#   booted  the booted hosts' root (boot.sh): plain's packages, ./packages.booted
#           (systemd as init, networkd) and the harness's own units
# Prints the path of the finished root on its last line of stdout.
# The cache lives outside the repository:
#   ${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}/<key>/root
# where <key> is a hash of this script, the variant and its package lists, so a
# change to any builds a new root (old roots are left alone: running hosts may still use them).
# Safe to run concurrently (flock); idempotent (a finished root is reused).
# Needs: root, debootstrap, flock, sha256sum. Network: deb.debian.org only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}
mirror=${IMAGE_PROVISION_TESTHOST_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
variant=${1:-plain}

die() { echo "build-root.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap flock sha256sum chroot; do
    command -v "$tool" >/dev/null || die "missing prerequisite '$tool' (apt-get install debootstrap util-linux coreutils)"
done

case $variant in
    plain) lists=("$here/packages") ;;
    booted) lists=("$here/packages" "$here/packages.booted") ;;
    *) die "unknown variant '$variant' (plain or booted)" ;;
esac
packages=$(cat "${lists[@]}" | grep -v '^[[:space:]]*\(#\|$\)' | tr -s '[:space:]' ' ' | sed 's/ $//')
key=$( (cat "$here/build-root.sh" "${lists[@]}"; echo "$variant") | sha256sum | cut -c1-16)
dir=$cache/$key

# shellcheck source=/dev/null # tests/testhost/cache.sh
source "$here/cache.sh"
reuse_or_lock "$cache" "$dir" "$dir/root"

echo "build-root.sh: building Debian 12 root in $dir (packages: $packages)" >&2
start=$(date +%s)
tmp=$cache/$key.tmp
rm -rf "$tmp"
mkdir -p "$tmp" "$cache/debs"

debootstrap --variant=minbase --cache-dir="$cache/debs" \
    --include="${packages// /,}" "$suite" "$tmp/root" "$mirror" >&2

root=$tmp/root

# Apt sources like a Debian 12 cloud image (deb.debian.org serves both).
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES

# Users: root; admin (passwordless sudo, like Debian's cloud images); ubuntu
# (the same, the default user of Ubuntu's images, for the Ubuntu stand-in);
# pwuser (sudo asks for a password; the password is set per test host).
chroot "$root" /bin/bash -euo pipefail >&2 <<'SETUP'
useradd --create-home --shell /bin/bash admin
useradd --create-home --shell /bin/bash ubuntu
useradd --create-home --shell /bin/bash --groups sudo pwuser
printf '%s\n' 'admin ALL=(ALL) NOPASSWD:ALL' 'ubuntu ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/90-cloud-users
chmod 0440 /etc/sudoers.d/90-cloud-users
visudo -c >/dev/null
for home in /root /home/admin /home/ubuntu /home/pwuser; do
    install -d -m 0700 "$home/.ssh"
done
for user in admin ubuntu pwuser; do
    chown "$user:$user" "/home/$user/.ssh"
done
# Host keys are generated per test host, never baked.
rm -f /etc/ssh/ssh_host_*
cat >/etc/ssh/sshd_config.d/testhost.conf <<'SSHD'
# image-provision test host: public keys only.
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
HostKey /etc/ssh/ssh_host_ed25519_key
SSHD
apt-get clean
rm -rf /var/lib/apt/lists/*
SETUP

if [ "$variant" = booted ]; then
    # The booted hosts run under systemd-nspawn with a network of their own
    # (boot.sh writes host0's address per host) and run real dockerd, which
    # needs cgroup v1 controllers it can write: nspawn mounts them read-only,
    # so a unit remounts them before containerd and Docker start. Consoles
    # are not needed.
    cat >"$root/etc/systemd/system/testhost-cgroups.service" <<'UNIT'
[Unit]
Description=image-provision test host: writable cgroup controllers for dockerd
DefaultDependencies=no
After=sys-fs-cgroup.mount
Before=containerd.service docker.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for c in /sys/fs/cgroup/*; do case $${c##*/} in systemd|unified) ;; *) mount -o remount,bind,rw "$$c" || true ;; esac; done'

[Install]
WantedBy=sysinit.target
UNIT
    chroot "$root" /bin/bash -euo pipefail >&2 <<'SETUP'
systemctl enable testhost-cgroups.service systemd-networkd.service
systemctl mask console-getty.service getty@.service systemd-resolved.service 2>/dev/null || true
SETUP
fi

touch "$tmp/ok"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "build-root.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$dir/root"
