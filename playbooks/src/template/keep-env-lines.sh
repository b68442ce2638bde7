#!/bin/bash
# An env file of the host's merged with image-provision's lines, on the
# host: its content never crosses the connection nor shows in a log. Used
# where a run gives no file of the person's own and the server's holds
# their secrets: config/healthcheck.env (its Slack webhook, with our
# LOG_DIR: IMAGE's scripts/healthcheck exports the lines through xargs, so
# the last of a key counts), config/vllm.env (its HF_TOKEN, with our vLLM
# settings). 0600 and ENV_OWNER's. When image-provision's record says it
# wrote the file as it was, the record follows the new content (the file is
# still image-provision's, a later upload replaces it with no copy).
# Inputs: ENV_FILE; FROM, the file whose lines are kept (ENV_FILE itself,
# or an older file of the same settings); OURS, our KEY=value lines (and
# comments); KEEP, the keys whose lines alone are kept, space-separated
# ("all": every line but those of a key OURS sets); ENV_OWNER; RECORD,
# image-provision's record of what it wrote.
set -euo pipefail
umask 077
before=$( (sha256sum <"$ENV_FILE" | cut -d' ' -f1) 2>/dev/null || true)
tmp=$(mktemp -- "$ENV_FILE.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
if [ "$KEEP" = all ]; then
    keys=$(sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' <<<"$OURS" | paste -sd'|' -)
    pattern="^[[:space:]]*(${keys:-#})="
    invert=-v
else
    pattern="^[[:space:]]*($(tr ' ' '|' <<<"$KEEP"))="
    invert=
fi
{
    printf '%s\n' "$OURS"
    grep -E $invert -- "$pattern" "$FROM" || true
} >"$tmp"
chown -- "$ENV_OWNER" "$tmp"
chmod 0600 -- "$tmp"
mv -f -- "$tmp" "$ENV_FILE"
after=$(sha256sum <"$ENV_FILE" | cut -d' ' -f1)
if [ -n "$before" ] && [ -f "$RECORD" ] && grep -qxF -- "$before $ENV_FILE" "$RECORD"; then
    tmp=$(mktemp -- "$RECORD.XXXXXX")
    awk -v old="$before $ENV_FILE" -v new="$after $ENV_FILE" '$0 == old { print new; next } { print }' \
        "$RECORD" >"$tmp"
    mv -f -- "$tmp" "$RECORD"
fi
trap - EXIT
echo "kept ${FROM##*/}'s lines ($KEEP), with image-provision's in ${ENV_FILE##*/}"
