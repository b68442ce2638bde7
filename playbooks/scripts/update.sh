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
rc=0
timeout --kill-after=30 "$TIMEOUT" "$BASE_DIR/bin/imageup" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "imageup did not finish within $TIMEOUT s: its warm-up waits for every warm-up service to become healthy;" \
        "see \`docker compose ps\` in $BASE_DIR and $BASE_DIR/testing/warmup/" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "imageup failed (exit $rc)" >&2
    exit "$rc"
fi
echo "imageup done"
