#!/bin/bash
# Wait until the host is ready for apt: cloud-init finished (a fresh cloud
# image runs it on first boot) and no one holds the dpkg/apt locks
# (unattended-upgrades does on first boot). Both under time limits.
# Inputs: CLOUD_INIT_TIMEOUT, LOCK_TIMEOUT (seconds).
set -euo pipefail

if command -v cloud-init >/dev/null 2>&1; then
    # status --wait prints dots while it waits, then "status: ...". It exits 0
    # when done, 2 for "done with recoverable errors" (which still leaves the
    # host usable; argparse's usage errors are 2 as well, hence the status
    # line check), 1 on a fatal error.
    rc=0
    out=$(timeout "$CLOUD_INIT_TIMEOUT" cloud-init status --wait 2>&1) || rc=$?
    status=$(printf '%s\n' "$out" | sed -n 's/^\.*status: *//p' | tail -n 1)
    case $rc:$status in
    0:* | "2:done") ;;
    124:*)
        echo "cloud-init did not finish within ${CLOUD_INIT_TIMEOUT} s (still ${status:-running}; see /var/log/cloud-init-output.log on the host)" >&2
        exit 1
        ;;
    *)
        echo "cloud-init failed (exit $rc, status ${status:-unknown}): $(cloud-init status --long 2>&1 | tail -n 4 | tr '\n' ' ')" >&2
        echo "see /var/log/cloud-init.log and /var/log/cloud-init-output.log on the host" >&2
        exit 1
        ;;
    esac
fi

# The first held lock and who holds it ("/var/lib/dpkg/lock-frontend (apt-get,
# pid 123)"); /proc/locks lists fcntl and flock locks by inode.
held() {
    local lock inode pid
    for lock in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock; do
        [ -e "$lock" ] || continue
        inode=$(stat -c %i "$lock")
        pid=$(awk -v ino="$inode" '{ for (i = 1; i < NF; i++) if ($i ~ /^[0-9a-f]+:[0-9a-f]+:[0-9]+$/) { split($i, d, ":"); if (d[3] == ino) { print $(i - 1); exit } } }' /proc/locks)
        if [ -n "$pid" ]; then
            echo "$lock (held by $(cat "/proc/$pid/comm" 2>/dev/null || echo '?'), pid $pid)"
            return 0
        fi
    done
    return 1
}

deadline=$(($(date +%s) + LOCK_TIMEOUT))
while lock=$(held); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$lock is still locked after ${LOCK_TIMEOUT} s; on a fresh cloud image this is usually unattended-upgrades: wait for it (ps aux | grep -E 'apt|dpkg') and run bootstrap again" >&2
        exit 1
    fi
    sleep 1
done
