#!/bin/bash
# Run by image-provision-update.service (--auto-update): imageup as the
# IMAGE team's image_daily_cron runs it (with --service), or on a server
# bootstrapped with --no-imageup compose's pull and up, under the bring-up
# lock and a time limit, as `update` does: what runs recorded first; when
# the update fails or the stack is not healthy within HEALTH_TIMEOUT, back
# to the record (stack_rollback, the path `update` takes), and the unit
# fails, saying so. Then the team's health check, whatever happened.
# Output goes to the journal: journalctl -u image-provision-update.
# Inputs (the unit's Environment): BASE_DIR; TIMEOUT (seconds); IMAGEUP
# (yes|no); HEALTH_TIMEOUT (seconds).
set -euo pipefail
export HOME=/root
# The health check runs however the update ends; --no-block: this unit
# does not wait for it.
trap 'systemctl start --no-block image-provision-healthcheck.service || true' EXIT
# run_imageup, run_compose_up, stack_*: playbooks/src/bring_up/, put in front.
stack_before_update "$BASE_DIR"
echo "recorded: $(stack_describe "$STACK_RECORD_DIR/before")"
rc=0
if [ "$IMAGEUP" = yes ]; then
    # A subshell: run_imageup exits on failure, and the rollback follows.
    (run_imageup "$BASE_DIR" "$TIMEOUT" --service) || rc=$?
    what="imageup --service"
else
    (run_compose_up "$BASE_DIR" "$TIMEOUT") || rc=$?
    what="compose pull and up"
fi
if [ "$rc" -eq 0 ] && stack_wait_healthy "$BASE_DIR" "$HEALTH_TIMEOUT"; then
    echo "$what done; the stack is healthy"
    stack_updated "$BASE_DIR"
    exit 0
fi
if [ "$rc" -ne 0 ]; then
    echo "$what failed (exit $rc): rolling back" >&2
else
    echo "the stack was not healthy within $HEALTH_TIMEOUT s of $what: rolling back" >&2
fi
stack_rollback "$BASE_DIR" before "$TIMEOUT"
if ! stack_wait_healthy "$BASE_DIR" "$HEALTH_TIMEOUT"; then
    echo "rolled back, and the stack is still not healthy within $HEALTH_TIMEOUT s" >&2
    exit 1
fi
echo "the update failed and was rolled back; the stack is healthy (pinned until the next update)" >&2
exit 1
