# shellcheck shell=bash
# Restart Docker so that it reads daemon.json again, and wait until it
# answers (the docker and nvidia steps). A restart can fail while the old
# daemon lets go of what it held (a pull in flight, a loaded host): systemd
# starts it again by itself (Restart=on-failure), up to its start limit, so
# a failed restart is waited out rather than taken as the answer; past the
# limit the unit is reset and started once more. Bounded: after TIMEOUT
# seconds it fails with Docker's last log lines.
# Input: TIMEOUT (seconds).
set -euo pipefail

timeout=${TIMEOUT:-120}
if ! systemctl restart docker; then
    echo "Docker did not come back at once from its restart; waiting up to ${timeout}s for it" >&2
fi
deadline=$((SECONDS + timeout))
until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "Docker is not running ${timeout}s after its restart; its last log lines:" >&2
        journalctl -u docker.service -n 25 --no-pager >&2 || true
        exit 1
    fi
    if systemctl is-failed --quiet docker; then
        systemctl reset-failed docker || true
        systemctl start docker || true
    fi
    sleep 2
done
