#!/bin/bash
# Build the test host's local apt repository of stand-in packages.
#
# Usage: build-repo.sh OUTDIR
# OUTDIR gets the .deb files and a Packages index: a flat repository that a
# test host uses with
#   deb [trusted=yes] file:/srv/standin-apt ./
# (TestHost::enable_standin_repo copies it into the host and adds that line).
#
# The packages carry the names the real ones have where the real ones cannot
# work here (no GPU, no Debian non-free, no NVIDIA apt repository):
#   nvidia-driver-580-server  Ubuntu's server driver (the default branch, CUDA 13.0); depends on nvidia-utils-580-server
#   nvidia-utils-580-server   Ubuntu's nvidia-smi (the stand-in ./nvidia-smi)
#   nvidia-driver-570-server, nvidia-utils-570-server   the previous default (CUDA 12.8)
#   nvidia-driver-535-server, nvidia-utils-535-server   an older branch (CUDA 12.2)
#   nvidia-driver             Debian's (non-free) driver; depends on nvidia-smi
#   nvidia-smi                Debian's nvidia-smi (the stand-in ./nvidia-smi)
#   nvidia-container-toolkit  NVIDIA's repository: nvidia-ctk (./nvidia-ctk),
#                             nvidia-container-runtime and nvidia-container-cli (./not-runnable),
#                             nvidia-container-runtime-hook (./nvidia-container-runtime-hook,
#                             for real dockerd's GPU requests)
# The driver packages' postinst records "VERSION BOOT_ID" in
# /var/lib/standin/nvidia/driver: nvidia-smi works only once the boot id has
# changed, i.e. after a reboot. A test can make the next configure of a
# driver package slow (to cut the connection during it): write the seconds to
# /var/lib/standin/hooks/slow-postinst; /run/standin/hooks/postinst-started
# appears when the wait begins. Needs dpkg-deb (package dpkg) and sha256sum.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: build-repo.sh OUTDIR" >&2; exit 2; }
out=$1
command -v dpkg-deb >/dev/null || { echo "build-repo.sh: missing prerequisite dpkg-deb (apt-get install dpkg)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# pkg NAME VERSION "DEPENDS" "EXTRA CONTROL LINES" DESCRIPTION; files are put in
# $work/NAME beforehand; a driver package gets the postinst recording the boot.
pkg() {
    local name=$1 version=$2 depends=$3 extra=$4 description=$5 tree=$work/$1
    mkdir -p "$tree/DEBIAN"
    {
        echo "Package: $name"
        echo "Version: $version"
        echo "Architecture: amd64"
        echo "Maintainer: image-provision tests <tests@image-provision.invalid>"
        [ -z "$depends" ] || echo "Depends: $depends"
        [ -z "$extra" ] || printf '%s\n' "$extra"
        echo "Section: non-free/libs"
        echo "Priority: optional"
        echo "Description: $description (test host stand-in)"
        echo " A stand-in built by image-provision's test harness: it behaves like the"
        echo " real package's observable output and records every call."
    } >"$tree/DEBIAN/control"
    dpkg-deb --root-owner-group -Zgzip --build "$tree" "$out/${name}_${version}_amd64.deb" >/dev/null
}

bin() { # bin PACKAGE SOURCE TARGET-NAME
    install -D -m 0755 "$here/$2" "$work/$1/usr/bin/$3"
}

driver_postinst() { # driver_postinst PACKAGE VERSION
    mkdir -p "$work/$1/DEBIAN"
    cat >"$work/$1/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
    # Recorded (start and end) so tests can see what overlapped the install.
    echo "\$(date -u +%Y-%m-%dT%H:%M:%SZ) uid=0 $1.postinst configure-start" >>/var/log/standin/calls.log 2>/dev/null || true
    # Test hook: a slow configure, once. /var/lib/standin/hooks/slow-postinst
    # holds the seconds; it is removed as the wait starts (so a re-run after an
    # interruption is quick) and /run/standin/hooks/postinst-started says so.
    if [ -e /var/lib/standin/hooks/slow-postinst ]; then
        delay=\$(cat /var/lib/standin/hooks/slow-postinst)
        rm -f /var/lib/standin/hooks/slow-postinst
        mkdir -p /run/standin/hooks
        echo "$1 (stand-in): slow configure, \$delay s"
        touch /run/standin/hooks/postinst-started
        sleep "\$delay"
    fi
    mkdir -p /var/lib/standin/nvidia
    echo "$2 \$(cat /proc/sys/kernel/random/boot_id)" >/var/lib/standin/nvidia/driver
    echo "$1 (stand-in): the driver loads at the next boot"
    echo "\$(date -u +%Y-%m-%dT%H:%M:%SZ) uid=0 $1.postinst configure-done" >>/var/log/standin/calls.log 2>/dev/null || true
fi
POSTINST
    cat >"$work/$1/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
[ "$1" != remove ] && [ "$1" != purge ] || rm -f /var/lib/standin/nvidia/driver
POSTRM
    chmod 0755 "$work/$1/DEBIAN/postinst" "$work/$1/DEBIAN/postrm"
}

BRANCHES=(580-server 570-server 535-server)

# ubuntu_branch BRANCH DRIVER_VERSION PACKAGE_VERSION: Ubuntu's
# nvidia-driver-BRANCH and nvidia-utils-BRANCH (its nvidia-smi). Each
# branch's utils ship nvidia-smi: branches conflict, as in Ubuntu, so
# installing one branch removes another.
ubuntu_branch() {
    local branch=$1 driver=$2 version=$3 other utils='' drivers=''
    for other in "${BRANCHES[@]}"; do
        [ "$other" != "$branch" ] || continue
        utils="$utils, nvidia-utils-$other" drivers="$drivers, nvidia-driver-$other"
    done
    bin "nvidia-utils-$branch" nvidia-smi nvidia-smi
    pkg "nvidia-utils-$branch" "$version" "" \
        "Conflicts: nvidia-smi$utils" "NVIDIA Server Driver support binaries"
    driver_postinst "nvidia-driver-$branch" "$driver"
    pkg "nvidia-driver-$branch" "$version" "nvidia-utils-$branch (= $version)" \
        "Conflicts: nvidia-driver$drivers" "NVIDIA Server Driver metapackage"
}
# The default branch (CUDA 13.0, the long-term support branch), the
# previous default (CUDA 12.8), and an older one (CUDA 12.2). The stand-in
# nvidia-smi reports the version its package installed.
ubuntu_branch 580-server 580.95.05 580.95.05-0ubuntu0.22.04.1
ubuntu_branch 570-server 570.195.03 570.195.03-0ubuntu0.22.04.1
ubuntu_branch 535-server 535.230.02 535.230.02-0ubuntu0.22.04.3

debian_version=535.247.01-1~deb12u1
bin nvidia-smi nvidia-smi nvidia-smi
pkg nvidia-smi "$debian_version" "" \
    "Conflicts: $(printf 'nvidia-utils-%s, ' "${BRANCHES[@]}" | sed 's/, $//')" "NVIDIA System Management Interface"
driver_postinst nvidia-driver 535.247.01
pkg nvidia-driver "$debian_version" "nvidia-smi (= $debian_version)" \
    "Conflicts: $(printf 'nvidia-driver-%s, ' "${BRANCHES[@]}" | sed 's/, $//')" "NVIDIA metapackage"

bin nvidia-container-toolkit nvidia-ctk nvidia-ctk
bin nvidia-container-toolkit not-runnable nvidia-container-runtime
bin nvidia-container-toolkit not-runnable nvidia-container-cli
bin nvidia-container-toolkit nvidia-container-runtime-hook nvidia-container-runtime-hook
pkg nvidia-container-toolkit 1.17.8-1 "" "" "NVIDIA Container toolkit"

# The Packages index (what dpkg-scanpackages would write).
: >"$out/Packages"
for deb in "$out"/*.deb; do
    {
        dpkg-deb -f "$deb"
        echo "Filename: ./${deb##*/}"
        echo "Size: $(stat -c %s "$deb")"
        echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
        echo
    } >>"$out/Packages"
done
