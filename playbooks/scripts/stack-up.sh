#!/bin/bash
# Brings the IMAGE stack up: the IMAGE team's own scripts/imageup under a
# time limit (its warm-up waits for every warm-up service to be healthy and
# has no time limit of its own), or with IMAGEUP=no a plain compose pull and
# up. Records what was deployed (STAMP) once it is up.
# Inputs: BASE_DIR; IMAGEUP (yes|no); TIMEOUT (seconds); STAMP.
set -euo pipefail
export HOME=/root
state=$BASE_DIR/.image-provision
mkdir -p -- "$state"
rm -f -- "$state/deployed"

if [ "$IMAGEUP" = yes ]; then
    # run_imageup: scripts/lib/run-imageup.sh, which playbooks/src/image.rs
    # puts in front of this script (update.sh uses it too).
    run_imageup "$BASE_DIR" "$TIMEOUT"
else
    cd -- "$BASE_DIR"
    rc=0
    timeout "$TIMEOUT" docker compose --env-file "$BASE_DIR/.env" pull || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "docker compose pull failed or did not finish within $TIMEOUT s (exit $rc)" >&2
        exit 1
    fi
    docker compose --env-file "$BASE_DIR/.env" up -d
fi
printf '%s\n' "$STAMP" >"$state/deployed"
