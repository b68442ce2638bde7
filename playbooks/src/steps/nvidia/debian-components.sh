#!/bin/bash
# Enable more components (Debian 12: nvidia-driver is in non-free, its
# firmware in non-free-firmware, some of its helpers in contrib) on every
# entry of Debian's own archive: the entries whose suite is the release's
# codename (or CODENAME-updates, -security, -backports...) and that carry
# `main`, in one-line files (/etc/apt/sources.list, sources.list.d/*.list)
# and deb822 files (sources.list.d/*.sources, e.g. a cloud image's
# debian.sources). Other repositories are left alone. Writes a file only when
# it differs (same mode), so a second run changes nothing; prints each file
# changed.
# Inputs: CODENAME (e.g. bookworm), COMPONENTS (e.g. "contrib non-free non-free-firmware").
set -euo pipefail

# debian_sources_rewrite: debian-sources-rewrite.sh beside this file, put in
# front of this script (the nvidia step's facts use it too).

shopt -s nullglob
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    new=$(debian_sources_rewrite "$file" "$CODENAME" "$COMPONENTS")
    if [ "$new" != "$(cat "$file")" ]; then
        printf '%s\n' "$new" >"$file.image-provision.tmp"
        chmod --reference="$file" "$file.image-provision.tmp"
        mv -f "$file.image-provision.tmp" "$file"
        echo "enabled $COMPONENTS in $file"
    fi
done
