# shellcheck shell=bash
# A library, not a script: the nvidia step (mod.rs beside this file) puts it
# in front of hold-driver.sh and upgrade-driver.sh, which hold what it
# prints.

# driver_packages DRIVER: the metapackage DRIVER and every installed NVIDIA
# package it pulls in (libraries, utilities, kernel modules), one a line:
# what must change together, so what is held together.
driver_packages() {
    local p
    {
        echo "$1"
        apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "$1" 2>/dev/null |
            awk '{ p = $NF; gsub(/[<>]/, "", p); print p }'
    } | grep -E '^(lib)?nvidia-|^linux-(modules|objects|signatures)-nvidia-' | sort -u |
        while read -r p; do
            if dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^[ih]i'; then
                echo "$p"
            fi
        done
}
