#!/bin/bash
# Starts pulling the IMAGE stack's images in the background and returns at
# once: the pull is the longest part of a bootstrap, and it needs only Docker
# and the layout, so it runs while the NVIDIA driver installs. Layers pulled
# before an interruption (Docker's restart, the reboot) are kept, so the
# stack step's own pull finishes the rest.
# Inputs: BASE_DIR; ENV_SHA, the sha256 of the .env this pull is for.
set -euo pipefail
state=$BASE_DIR/.image-provision
mkdir -p -- "$state" /run/image-provision
rm -f -- "$state/pull.done"
cd -- "$BASE_DIR"
# setsid and every descriptor redirected: the pull outlives this SSH
# session and does not hold its channel open.
# shellcheck disable=SC2016 # expanded by the inner bash
setsid bash -c '
    docker compose --env-file "$1/.env" pull --quiet >"$2/pull.log" 2>&1
    printf "%s %s\n" "$?" "$3" >"$2/pull.done"
    rm -f /run/image-provision/pull.pid
' pull "$BASE_DIR" "$state" "$ENV_SHA" </dev/null >/dev/null 2>&1 &
echo $! >/run/image-provision/pull.pid
echo "pulling in the background (pid $!, log $state/pull.log)"
