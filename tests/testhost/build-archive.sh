#!/bin/bash
# Build (or find) the booted hosts' archive stand-in: a local flat apt
# repository of REAL Debian packages under the names the tool installs on
# Ubuntu 22.04, since Ubuntu's archive is not reachable from the tests:
#   docker.io           Debian 12's (20.10), real dockerd, containerd and runc
#   docker-compose-v2   Ubuntu's name for compose v2: Debian 13's docker-compose
#                       (2.26), repacked under that name (it needs libc6 only)
#   git python3-pip jq curl ca-certificates   the docker step's tools
# and every dependency they pull into the booted root, so a booted host needs
# no network beyond its own. A host uses it with
#   deb [trusted=yes] file:/srv/archive-standin ./
#
# Usage: build-archive.sh ROOT     (ROOT: the booted root, build-root.sh booted)
# Prints the repository's directory on its last line of stdout. Cached in
#   ${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}/archive-<key>
# keyed by this script and ROOT's path (which carries the root's own key).
# Debian 13's package is fetched by an apt configuration that lives in a
# throwaway overlay of ROOT: the machine's own apt sources are never touched.
# Needs: root, unshare, chroot, dpkg-deb; network: deb.debian.org.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IMAGE_PROVISION_TESTHOST_CACHE:-/var/cache/image-provision-testhost}
mirror=${IMAGE_PROVISION_TESTHOST_MIRROR:-http://deb.debian.org/debian}
die() { echo "build-archive.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build-archive.sh ROOT"
root=$1
[ -x "$root/bin/systemctl" ] || die "'$root' is not a booted root (run build-root.sh booted)"
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot, mount)"
for tool in unshare chroot dpkg-deb flock sha256sum; do
    command -v "$tool" >/dev/null || die "missing prerequisite '$tool'"
done

# What the docker step installs on Ubuntu (playbooks/src/steps/docker).
tools="git python3-pip jq curl ca-certificates"
key=$( (cat "$here/build-archive.sh"; echo "$root") | sha256sum | cut -c1-16)
dir=$cache/archive-$key
# shellcheck source=/dev/null # tests/testhost/cache.sh
source "$here/cache.sh"
reuse_or_lock "$cache" "$dir" "$dir/repo"

echo "build-archive.sh: building the archive stand-in in $dir" >&2
start=$(date +%s)
tmp=$cache/archive-$key.tmp
rm -rf "$tmp"
mkdir -p "$tmp"/{upper,work,merged,repo,repack}

unshare --mount --propagation private -- bash -euo pipefail -s "$root" "$tmp" "$mirror" "$tools" >&2 <<'BUILD'
root=$1 tmp=$2 mirror=$3 tools=$4
m=$tmp/merged
mount -t overlay overlay -o "lowerdir=$root,upperdir=$tmp/upper,workdir=$tmp/work" "$m"
mount -t proc proc "$m/proc"
mkdir -p "$m/out"
mount --bind "$tmp/repo" "$m/out"
cat /etc/resolv.conf >"$m/etc/resolv.conf"
# Debian 13 for docker-compose only, at a priority that never installs it.
echo "deb $mirror trixie main" >"$m/etc/apt/sources.list.d/trixie.list"
printf 'Package: *\nPin: release n=trixie\nPin-Priority: 1\n' >"$m/etc/apt/preferences.d/trixie"
chroot "$m" /bin/bash -euo pipefail -s "$tools" <<'INSIDE'
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -qq --download-only --no-install-recommends \
    -o Dir::Cache::archives=/out docker.io $1 >/dev/null
cd /out
apt-get download -qq docker-compose/trixie
rm -rf /out/partial /out/lock
INSIDE
BUILD

# docker-compose (Debian 13) repacked as docker-compose-v2 (Ubuntu's name).
compose=$(ls "$tmp/repo"/docker-compose_2.*_amd64.deb)
dpkg-deb -R "$compose" "$tmp/repack/tree"
sed -i -e 's/^Package: docker-compose$/Package: docker-compose-v2/' \
    -e 's/^Version: \(.*\)$/Version: \1~testhost/' "$tmp/repack/tree/DEBIAN/control"
[ -x "$tmp/repack/tree/usr/libexec/docker/cli-plugins/docker-compose" ] ||
    die "Debian's docker-compose no longer ships the CLI plugin where docker looks for it"
version=$(sed -n 's/^Version: //p' "$tmp/repack/tree/DEBIAN/control")
dpkg-deb --root-owner-group -Zgzip --build "$tmp/repack/tree" \
    "$tmp/repo/docker-compose-v2_${version}_amd64.deb" >/dev/null
rm -f "$compose"

# The Packages index (what dpkg-scanpackages would write).
: >"$tmp/repo/Packages"
for deb in "$tmp/repo"/*.deb; do
    {
        dpkg-deb -f "$deb"
        echo "Filename: ./${deb##*/}"
        echo "Size: $(stat -c %s "$deb")"
        echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
        echo
    } >>"$tmp/repo/Packages"
done

mkdir -p "$dir.new"
mv "$tmp/repo" "$dir.new/repo"
rm -rf "$tmp"
touch "$dir.new/ok"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "build-archive.sh: built in $(( $(date +%s) - start )) s ($(find "$dir/repo" -name "*.deb" | wc -l) packages)" >&2
echo "$dir/repo"
