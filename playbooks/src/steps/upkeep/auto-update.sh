#!/bin/bash
# Run by image-provision-update.service (--auto-update): imageup as the
# IMAGE team's image_daily_cron runs it (with --service), or on a server
# bootstrapped with --no-imageup compose's pull and up, under the bring-up
# lock and a time limit; then the team's health check, whatever happened.
# Output goes to the journal: journalctl -u image-provision-update.
# Inputs (the unit's Environment): BASE_DIR; TIMEOUT (seconds); IMAGEUP
# (yes|no).
set -euo pipefail
export HOME=/root
# The health check runs however the update ends (run_imageup exits the
# script when imageup fails); --no-block: this unit does not wait for it.
trap 'systemctl start --no-block image-provision-healthcheck.service || true' EXIT
# run_imageup, run_compose_up: playbooks/src/bring_up/run-imageup.sh, put in front.
if [ "$IMAGEUP" = yes ]; then
    run_imageup "$BASE_DIR" "$TIMEOUT" --service
    echo "imageup --service done"
else
    run_compose_up "$BASE_DIR" "$TIMEOUT"
    echo "compose pull and up done"
fi
