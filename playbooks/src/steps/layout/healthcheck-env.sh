#!/bin/bash
# config/healthcheck.env on a run that gives no --env-file healthcheck.env
# (playbooks/src/steps/layout): what the server has is kept, a Slack
# webhook included, with LOG_DIR the directory the upkeep step's timer
# prunes (one LOG_DIR line, the last: IMAGE's scripts/healthcheck exports
# the file's lines through xargs, so the last of a key counts), 0600 and
# the login user's. Read and written here, on the host: the file's content
# never crosses the connection nor shows in a log. When image-provision's
# record says it wrote the file as it was, the record follows the new
# content (the file is still image-provision's, a later upload replaces it
# with no copy).
# Inputs: ENV_FILE; LOG_DIR; ENV_OWNER; RECORD, image-provision's record of
# what it wrote.
set -euo pipefail
umask 077
before=$(sha256sum <"$ENV_FILE" | cut -d' ' -f1)
tmp=$(mktemp -- "$ENV_FILE.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
{
    grep -v '^[[:space:]]*LOG_DIR=' -- "$ENV_FILE" || true
    printf 'LOG_DIR=%s\n' "$LOG_DIR"
} >"$tmp"
chown -- "$ENV_OWNER" "$tmp"
chmod 0600 -- "$tmp"
mv -f -- "$tmp" "$ENV_FILE"
after=$(sha256sum <"$ENV_FILE" | cut -d' ' -f1)
if [ -f "$RECORD" ] && grep -qxF -- "$before $ENV_FILE" "$RECORD"; then
    tmp=$(mktemp -- "$RECORD.XXXXXX")
    awk -v old="$before $ENV_FILE" -v new="$after $ENV_FILE" '$0 == old { print new; next } { print }' \
        "$RECORD" >"$tmp"
    mv -f -- "$tmp" "$RECORD"
fi
trap - EXIT
echo "kept ${ENV_FILE##*/}'s lines, LOG_DIR=$LOG_DIR"
