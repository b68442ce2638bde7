#!/bin/bash
# Brings the IMAGE stack up: the IMAGE team's own scripts/imageup under a
# time limit (its warm-up waits for every warm-up service to be healthy and
# has no time limit of its own), or with IMAGEUP=no a plain compose pull and
# up. Records what was deployed (STAMP) once it is up. Lifts the pin a
# rollback left, saying so.
# Inputs: BASE_DIR; IMAGEUP (yes|no); TIMEOUT (seconds); STAMP.
set -euo pipefail
export HOME=/root
state=$BASE_DIR/.image-provision
mkdir -p -- "$state"
rm -f -- "$state/deployed"

# run_imageup, run_compose_up, stack_history: playbooks/src/bring_up/, put in
# front of this script (update.sh uses them too).
# A stack rolled back by `update` is pinned to its recorded images; this
# bring-up follows the branch and `latest` (imageup), so it lifts the pin,
# and says so (the step's output, the record's history).
if [ -f "$STACK_RECORD_DIR/pin.yml" ]; then
    undone="the rollback to $(stack_describe "$STACK_RECORD_DIR/current") is undone: this bring-up follows the branch and its latest images"
    rm -f -- "$STACK_RECORD_DIR/pin.yml"
    stack_history "unpinned by bootstrap: $undone" >/dev/null
    # The step's summary shows it.
    echo "result: $undone"
fi
if [ "$IMAGEUP" = yes ]; then
    run_imageup "$BASE_DIR" "$TIMEOUT"
else
    run_compose_up "$BASE_DIR" "$TIMEOUT"
fi
printf '%s\n' "$STAMP" >"$state/deployed"
