#!/bin/bash
# Holds the NVIDIA driver (apt-mark hold): the metapackage and every
# installed NVIDIA package it pulls in (libraries, utilities, kernel
# modules), so that neither unattended-upgrades nor a person's
# `apt-get upgrade` replaces the driver's libraries under the loaded kernel
# module (nvidia-smi then fails with "Driver/library version mismatch" until
# a reboot). `image-provision update --upgrade-driver` lifts the hold, upgrades,
# holds again and reboots.
# Inputs: DRIVER (the metapackage, e.g. nvidia-driver-580-server).
set -euo pipefail
mapfile -t packages < <(
    {
        echo "$DRIVER"
        apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "$DRIVER" 2>/dev/null |
            awk '{ p = $NF; gsub(/[<>]/, "", p); print p }'
    } | grep -E '^(lib)?nvidia-|^linux-(modules|objects|signatures)-nvidia-' | sort -u
)
installed=()
for p in "${packages[@]}"; do
    if dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^[ih]i'; then
        installed+=("$p")
    fi
done
apt-mark hold "${installed[@]}"
