#!/bin/bash
# `update`'s record of what runs, after the update (ACTION):
#   updated    the stack was healthy and answered: what ran before becomes
#              `previous`, what runs `current`;
#   before     it was not: back to what ran when the update started;
#   previous   `update --rollback`: back to what ran before the last good
#              update.
# Back means: the clone at the recorded commit, compose pinned to the
# recorded image digests (an override), `up -d` and IMAGE's warmup, under
# the bring-up lock and TIMEOUT; "rolled back from X to Y" in the history
# (see stack-record.sh). Exits 4 when nothing is recorded to return to.
# Inputs: BASE_DIR; ACTION; TIMEOUT (seconds).
set -euo pipefail
export HOME=/root
# stack_updated, stack_rollback: playbooks/src/bring_up/stack-record.sh, put in front.
case "$ACTION" in
updated) stack_updated "$BASE_DIR" ;;
before | previous) stack_rollback "$BASE_DIR" "$ACTION" "$TIMEOUT" ;;
*)
    echo "rollback.sh: unknown ACTION '$ACTION'" >&2
    exit 2
    ;;
esac
