#!/bin/bash
# `update`: runs the IMAGE team's scripts/imageup again, under a time limit
# (its warm-up waits with no limit of its own), and nothing else. The deploy
# stamp stays as bootstrap wrote it: the settings did not change.
# Inputs: BASE_DIR; TIMEOUT (seconds).
set -euo pipefail
export HOME=/root
if [ ! -x "$BASE_DIR/bin/imageup" ]; then
    echo "$BASE_DIR/bin/imageup not found: this host is not bootstrapped (run \`image-provision bootstrap\` first)" >&2
    exit 3
fi
# run_imageup: scripts/lib/run-imageup.sh, which playbooks/src/verify.rs puts
# in front of this script (stack-up.sh uses it too).
run_imageup "$BASE_DIR" "$TIMEOUT"
echo "imageup done"
