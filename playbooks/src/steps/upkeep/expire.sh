# shellcheck shell=bash
# The power-off at the server's expiry (playbooks/src/steps/upkeep), run by
# image-provision-expire.service: at the expiry, at every boot, whenever
# its timer is armed again (and systemd reloads its units). Before the expiry it says when and does nothing
# else; once the expiry has passed it says so (the journal, the console,
# which EC2's system log shows, and every logged-in terminal) and powers the
# server off.
# Input: EXPIRES_AT, RFC 3339 in UTC (2026-12-02T03:04:05Z).
set -euo pipefail

expires=${EXPIRES_AT:-}
if ! at=$(date -u -d "$expires" +%s 2>/dev/null) || [ -z "$expires" ]; then
    echo "image-provision: the expiry ${expires@Q} is not a time; not powering off" >&2
    exit 1
fi
now=$(date -u +%s)
if [ "$now" -lt "$at" ]; then
    left=$((at - now))
    echo "image-provision: this server expires at $expires, in $((left / 3600))h $((left % 3600 / 60))m $((left % 60))s; it powers off then"
    exit 0
fi
message="image-provision: this server expired at $expires; powering it off now"
echo "$message"
if command -v wall >/dev/null; then
    wall "$message" 2>/dev/null || true
fi
systemctl --no-block poweroff
