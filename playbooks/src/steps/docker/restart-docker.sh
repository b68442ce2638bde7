# shellcheck shell=bash
# Restart Docker so that it reads daemon.json again, and wait until it
# answers (the docker and nvidia steps). A restart can fail while the old
# daemon lets go of what it held (a pull in flight, a loaded host): systemd
# starts it again by itself (Restart=on-failure), up to its start limit, so
# a failed restart is waited out rather than taken as the answer; a unit
# that stays down is reset and started once more. Bounded: after TIMEOUT
# seconds it fails with Docker's last log lines.
# Input: TIMEOUT (seconds).
set -euo pipefail

timeout=${TIMEOUT:-120}
if ! systemctl restart docker; then
    echo "Docker did not come back at once from its restart; waiting up to ${timeout}s for it" >&2
fi
answers() {
    local version
    version=$(docker info --format '{{.ServerVersion}}' 2>/dev/null) && [ -n "$version" ]
}
deadline=$((SECONDS + timeout))
until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "Docker is not running ${timeout}s after its restart; its last log lines:" >&2
        if command -v journalctl >/dev/null; then journalctl -u docker.service -n 25 --no-pager >&2 || true; fi
        exit 1
    fi
    if ! systemctl is-active --quiet docker; then
        # Past its start limit systemd starts it no more by itself.
        systemctl reset-failed docker 2>/dev/null || true
        systemctl start docker || true
    fi
    sleep 2
done
