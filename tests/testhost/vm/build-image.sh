#!/bin/bash
# Build (or find) the virtual machine's image: the tests' stand-in for
# Ubuntu 22.04's EC2 image (an AMI), booted by qemu (tests/testhost/vm,
# testsupport/src/vm.rs). A debootstrapped Debian 12 with Debian's kernel,
# systemd, OpenSSH, real cloud-init (NoCloud) and AppArmor, saying it is
# Ubuntu 22.04, with what the booted hosts get from the harness baked in:
#   - apt: the archive stand-in, served to the guest over HTTP by the test
#     (http://10.0.2.2:18080/archive, the machine's loopback seen from
#     qemu's user network), and the NVIDIA stand-in repositories in /srv
#     (build-repo.sh, sign-repo.sh), pinned as on the booted hosts;
#   - GitHub: the stand-in IMAGE-server repository and git-remote-https;
#   - ghcr.io and Docker Hub: 10.0.2.2 in /etc/hosts, the tests' CA
#     (build-registry.sh) trusted by the system and by Docker for ghcr.io;
#   - lspci (an A10G), and root's authorized key for the harness only
#     (harness_ed25519_key beside the image; the tool logs in as ubuntu with
#     the key pair create imported, which cloud-init installs).
# No SSH host key: cloud-init installs the one create hands over.
#
# Usage: build-image.sh ARCHIVE CA_DIR
#   ARCHIVE  the archive stand-in (build-archive.sh), only for the cache key
#   CA_DIR   the tests' CA (build-registry.sh's directory: ca.crt)
# Prints the image's directory on its last line of stdout: vmlinuz,
# initrd.img, root.img (ext4, no partition table: root=/dev/vda),
# harness_ed25519_key. Cached in
#   ${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}/vm-<key>
# keyed by this script, the stand-ins and the CA.
# Needs: root, debootstrap, mkfs.ext4 (e2fsprogs), ssh-keygen, dpkg-deb, gpg.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
testhost=$(cd "$here/.." && pwd)
cache=${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}
mirror=${IMAGE_PROVISION_TESTHOST_MIRROR:-http://deb.debian.org/debian}
die() { echo "build-image.sh: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: build-image.sh ARCHIVE CA_DIR"
archive=$1 ca_dir=$2
[ -e "$archive/Packages" ] || die "no archive stand-in at '$archive'"
[ -e "$ca_dir/ca.crt" ] || die "no tests' CA in '$ca_dir'"
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap mkfs.ext4 ssh-keygen dpkg-deb gpg flock; do
    command -v "$tool" >/dev/null || die "missing prerequisite '$tool'"
done

# debootstrap's own resolver knows no virtual packages (cloud-init's Python
# needs one): the base by debootstrap, the rest by apt inside.
base=systemd-sysv,dbus,ca-certificates,procps,iproute2,netbase
packages="linux-image-amd64 openssh-server sudo cloud-init ifupdown isc-dhcp-client apparmor gpg python3 locales"
key=$( (cat "$here/build-image.sh" "$testhost"/standins/* "$testhost"/standins/image-server/*/* \
    "$testhost/os-release.ubuntu-22.04" "$ca_dir/ca.crt" 2>/dev/null; echo "$base $packages") | sha256sum | cut -c1-16)
dir=$cache/vm-$key
# shellcheck source=/dev/null # tests/testhost/cache.sh
source "$here/../cache.sh"
reuse_or_lock "$cache" "$dir" "$dir"

echo "build-image.sh: building the VM image in $dir" >&2
start=$(date +%s)
tmp=$cache/vm-$key.tmp
rm -rf "$tmp"
mkdir -p "$tmp" "$cache/debs"
root=$tmp/root
debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$base" bookworm "$root" "$mirror" >&2
cat /etc/resolv.conf >"$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
# shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
unshare --mount --propagation private -- bash -euo pipefail -c '
    mount -t proc proc "$1/proc"
    # shellcheck disable=SC2086 # a list of package names
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $2 >/dev/null
' bash "$root" "$packages" >&2
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
# cloud-init sets en_US.UTF-8 as Ubuntu's images have it: generated here.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
chroot "$root" locale-gen >/dev/null

# ---- what an Ubuntu 22.04 AMI would be, as far as the tool can tell -------
install -m 0644 "$testhost/os-release.ubuntu-22.04" "$root/usr/lib/os-release"
printf '%s\n' DISTRIB_ID=Ubuntu DISTRIB_RELEASE=22.04 DISTRIB_CODENAME=jammy \
    'DISTRIB_DESCRIPTION="Ubuntu 22.04.5 LTS"' >"$root/etc/lsb-release"
echo "bookworm/sid" >"$root/etc/debian_version"
echo "/dev/vda / ext4 defaults 0 1" >"$root/etc/fstab"
printf 'auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n' >"$root/etc/network/interfaces"
: >"$root/etc/machine-id"
rm -f "$root/etc/ssh/ssh_host_"*
printf "%s\n" "127.0.0.1 localhost" "127.0.1.1 image-vm" "10.0.2.2 ghcr.io registry-1.docker.io" >"$root/etc/hosts"
echo image-vm >"$root/etc/hostname"
cat >"$root/etc/cloud/cloud.cfg.d/90-image-provision-tests.cfg" <<'CLOUD'
# image-provision tests: NoCloud only (the seed's address is on the kernel
# command line), Ubuntu's default user, nothing fetched from the Internet.
datasource_list: [NoCloud, None]
system_info:
  default_user:
    name: ubuntu
    lock_passwd: true
    gecos: Ubuntu
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
apt:
  preserve_sources_list: true
package_update: false
package_upgrade: false
CLOUD

# apt: the archive stand-in over HTTP, and the NVIDIA stand-ins in /srv.
printf '%s\n' "# image-provision tests: the archive stand-in (tests/testhost/build-archive.sh)" \
    "deb [trusted=yes] http://10.0.2.2:18080/archive ./" >"$root/etc/apt/sources.list"
bash "$testhost/standins/build-repo.sh" "$root/srv/standin-apt" >&2
bash "$testhost/standins/sign-repo.sh" "$root/srv/standin-apt" "$root/srv/standin-signed" >&2
ln -sfn standin-signed "$root/srv/standin-nvidia"
printf '%s\n' "deb [trusted=yes] file:/srv/standin-apt ./" >"$root/etc/apt/sources.list.d/standin.list"
cat >"$root/etc/apt/preferences.d/standin.pref" <<'PREF'
Package: nvidia-driver nvidia-smi nvidia-driver-580-server nvidia-utils-580-server nvidia-driver-570-server nvidia-utils-570-server nvidia-driver-535-server nvidia-utils-535-server nvidia-container-toolkit
Pin: origin ""
Pin-Priority: 1001
PREF
install -m 0755 "$testhost/standins/lspci" "$root/usr/bin/lspci"
mkdir -p "$root/var/log/standin" "$root/var/lib/standin"
install -m 0666 /dev/null "$root/var/log/standin/calls.log"

# GitHub: the stand-in IMAGE-server repository, through git-remote-https.
bash "$testhost/standins/build-image-server.sh" "$tmp/github" >/dev/null
cp -a "$tmp/github" "$root/srv/github"
chroot "$root" dpkg-divert --quiet --local --rename --divert /usr/lib/git-core/git-remote-https.distrib \
    --add /usr/lib/git-core/git-remote-https
install -D -m 0755 "$testhost/standins/git-remote-https" "$root/usr/lib/git-core/git-remote-https"

# The tests' CA: for the registry (ghcr.io, Docker Hub) and pebble.
install -D -m 0644 "$ca_dir/ca.crt" "$root/usr/local/share/ca-certificates/image-provision-tests-ca.crt"
install -D -m 0644 "$ca_dir/ca.crt" "$root/etc/docker/certs.d/ghcr.io/ca.crt"
chroot "$root" update-ca-certificates >/dev/null 2>&1

# The harness's way in (root only, key only).
ssh-keygen -q -t ed25519 -N '' -C image-provision-vm-harness -f "$tmp/harness_ed25519_key"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$tmp/harness_ed25519_key.pub" "$root/root/.ssh/authorized_keys"

chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists/"*
cp -L "$root/vmlinuz" "$tmp/vmlinuz"
cp -L "$root/initrd.img" "$tmp/initrd.img"
# 16 GiB, sparse: images and containers land here.
mkfs.ext4 -q -L root -d "$root" "$tmp/root.img" 16G
rm -rf "$root" "$tmp/github"
touch "$tmp/ok"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "build-image.sh: built in $(($(date +%s) - start)) s" >&2
echo "$dir"
