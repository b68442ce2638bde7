#!/bin/bash
# `update`: runs the IMAGE team's scripts/imageup again, under a time limit
# (its warm-up waits with no limit of its own), or with IMAGEUP=no (a server
# bootstrapped with --no-imageup) compose's pull and up, and nothing else;
# first what runs is recorded (the clone's commit, each service's image
# digest) and its images kept, so that `update` can return to it
# (rollback.sh) should the stack not be healthy afterwards, and a pin left
# by an earlier rollback is lifted. The deploy stamp stays as bootstrap
# wrote it: the settings did not change.
# Inputs: BASE_DIR; IMAGEUP (yes|no); TIMEOUT (seconds).
set -euo pipefail
export HOME=/root
if [ ! -x "$BASE_DIR/bin/imageup" ] || [ ! -f "$BASE_DIR/.env" ]; then
    echo "$BASE_DIR/bin/imageup or $BASE_DIR/.env not found: this host is not bootstrapped (run \`image-provision bootstrap\` first)" >&2
    exit 3
fi
# run_imageup, run_compose_up, stack_before_update: playbooks/src/bring_up/,
# put in front of this script (stack-up.sh and auto-update.sh use them too).
stack_before_update "$BASE_DIR"
echo "recorded: $(stack_describe "$STACK_RECORD_DIR/before")"
if [ "$IMAGEUP" = yes ]; then
    run_imageup "$BASE_DIR" "$TIMEOUT"
    echo "imageup done"
else
    run_compose_up "$BASE_DIR" "$TIMEOUT"
    echo "compose pull and up done"
fi
