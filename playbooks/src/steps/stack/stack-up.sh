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

# run_imageup, run_compose_up: playbooks/src/bring_up/run-imageup.sh, put in front
# of this script (update.sh uses it too).
if [ "$IMAGEUP" = yes ]; then
    run_imageup "$BASE_DIR" "$TIMEOUT"
else
    run_compose_up "$BASE_DIR" "$TIMEOUT"
fi
printf '%s\n' "$STAMP" >"$state/deployed"
