#!/bin/bash
# Builds the stand-in Docker packages into OUTDIR (run before build-repo.sh,
# which indexes every .deb there):
#   docker.io, docker-compose-v2          Ubuntu's names
#   docker-ce, docker-ce-cli, containerd.io, docker-compose-plugin
#                                         Docker's repository (Debian)
# The CLI is ./docker, the plugin ./docker-compose; the packages that carry
# the daemon ship a docker.service unit file (the systemctl stand-in knows
# units by it) and create the docker group, as the real ones do.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: build-docker-debs.sh OUTDIR" >&2; exit 2; }
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# deb NAME VERSION "EXTRA CONTROL LINES" DESCRIPTION CLI? PLUGIN? DAEMON?
deb() {
    local name=$1 version=$2 extra=$3 description=$4 cli=$5 plugin=$6 daemon=$7 tree=$work/$1
    mkdir -p "$tree/DEBIAN"
    [ "$cli" = no ] || install -D -m 0755 "$here/docker" "$tree/usr/bin/docker"
    [ "$plugin" = no ] || install -D -m 0755 "$here/docker-compose" "$tree/usr/libexec/docker/cli-plugins/docker-compose"
    if [ "$daemon" = yes ]; then
        install -d "$tree/lib/systemd/system"
        printf '[Unit]\nDescription=Docker Application Container Engine (test host stand-in)\n' \
            >"$tree/lib/systemd/system/docker.service"
        # shellcheck disable=SC2016 # $1 is the postinst's own argument
        printf '#!/bin/sh\nset -e\n[ "$1" != configure ] || getent group docker >/dev/null || groupadd --system docker\n' \
            >"$tree/DEBIAN/postinst"
        chmod 0755 "$tree/DEBIAN/postinst"
    fi
    {
        echo "Package: $name"
        echo "Version: $version"
        echo "Architecture: amd64"
        echo "Maintainer: image-provision tests <tests@image-provision.invalid>"
        [ -z "$extra" ] || printf '%s\n' "$extra"
        echo "Section: admin"
        echo "Priority: optional"
        echo "Description: $description (test host stand-in)"
        echo " A stand-in built by image-provision's test harness: it behaves like the"
        echo " real package's observable output and records every call."
    } >"$tree/DEBIAN/control"
    dpkg-deb --root-owner-group -Zgzip --build "$tree" "$out/${name}_${version}_amd64.deb" >/dev/null
}

# Ubuntu 22.04's versions (higher than Debian's own docker.io, so apt picks these).
deb docker.io 24.0.7-0ubuntu2~22.04.1 "Conflicts: docker-ce, docker-ce-cli" "Linux container runtime" yes no yes
deb docker-compose-v2 2.24.6+ds1-0ubuntu1~22.04.1 "Depends: docker.io
Conflicts: docker-compose-plugin" "Docker Compose v2 CLI plugin" no yes no
# Docker's repository.
deb docker-ce-cli 5:24.0.7-1~debian.12~bookworm "Conflicts: docker.io" "Docker CLI" yes no no
deb containerd.io 1.6.28-1 "" "containerd runtime" no no no
deb docker-ce 5:24.0.7-1~debian.12~bookworm "Depends: docker-ce-cli, containerd.io
Conflicts: docker.io" "Docker engine" no no yes
deb docker-compose-plugin 2.24.6-1~debian.12~bookworm "Conflicts: docker-compose-v2" "Docker Compose v2 CLI plugin" no yes no
