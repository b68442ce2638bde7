#!/bin/bash
# Run by image-provision-stack.service at boot: the IMAGE stack's existing
# containers started (every IMAGE service has restart: "no"), without a pull
# or a git reset, then the IMAGE team's warmup, all under the bring-up lock
# (an imageup already running is waited for, not fought) and a time limit.
# Output goes to the journal: journalctl -u image-provision-stack.
# Inputs (the unit's Environment): BASE_DIR; TIMEOUT (seconds).
set -euo pipefail
export HOME=/root
if [ ! -f "$BASE_DIR/.env" ] || [ ! -f "$BASE_DIR/.image-provision/deployed" ]; then
    echo "$BASE_DIR has no deployed stack (no .env or deploy stamp): nothing to start"
    exit 0
fi
# bring_up_lock, not_healthy_on_image_network: playbooks/src/bring_up/bring-up-lock.sh, put in front.
bring_up_lock "$BASE_DIR" "$TIMEOUT"
cd -- "$BASE_DIR"
echo "starting the stack's containers"
# --no-recreate: what imageup last created, as it was; --pull never: a boot
# must not wait on (or be changed by) the registry.
# stack_compose: pinned to the recorded images while rolled back
# (playbooks/src/bring_up/stack-record.sh, put in front).
stack_compose "$BASE_DIR" up -d --no-recreate --pull never --no-build
echo "warming up"
rc=0
timeout --kill-after=30 "$TIMEOUT" "$BASE_DIR/bin/warmup" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "warmup did not finish within $TIMEOUT s; not healthy on the image network:"
    not_healthy_on_image_network
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    echo "warmup failed (exit $rc)"
    exit "$rc"
fi
echo "the stack is up"
