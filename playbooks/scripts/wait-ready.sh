#!/bin/bash
# Wait until the host is ready for apt: cloud-init finished (a fresh cloud
# image runs it on first boot) and no one holds the dpkg/apt locks
# (unattended-upgrades does on first boot). Both under time limits.
# Inputs: CLOUD_INIT_TIMEOUT, LOCK_TIMEOUT (seconds).
set -euo pipefail

if command -v cloud-init >/dev/null 2>&1; then
    # status --wait exits 0 when done, 2 for "done with recoverable errors"
    # (which still leaves the host usable), 1 on a fatal error.
    rc=0
    timeout "$CLOUD_INIT_TIMEOUT" cloud-init status --wait >/dev/null || rc=$?
    case $rc in
    0 | 2) ;;
    124)
        echo "cloud-init did not finish within ${CLOUD_INIT_TIMEOUT} s (see /var/log/cloud-init-output.log on the host)" >&2
        exit 1
        ;;
    *)
        echo "cloud-init failed (status $rc): $(cloud-init status --long 2>&1 | tail -n 3)" >&2
        exit 1
        ;;
    esac
fi

held() {
    local lock inode
    for lock in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock; do
        [ -e "$lock" ] || continue
        inode=$(stat -c %i "$lock")
        if grep -Eq "^[0-9]+: .* [0-9a-f]+:[0-9a-f]+:$inode " /proc/locks; then
            echo "$lock"
            return 0
        fi
    done
    return 1
}

deadline=$(($(date +%s) + LOCK_TIMEOUT))
while lock=$(held); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$lock is still held after ${LOCK_TIMEOUT} s (unattended-upgrades? see: ps aux | grep -E 'apt|dpkg')" >&2
        exit 1
    fi
    sleep 2
done
