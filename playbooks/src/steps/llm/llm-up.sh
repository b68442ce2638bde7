#!/bin/bash
# The local LLM up: its API key (vLLM's: generated once and kept on the
# host, LLM_DIR/key.env, 0600: it never leaves the host; Ollama checks none,
# so the stack gets a placeholder, IMAGE's client needing one), the stack's
# config/llm.env written from it (LLM_URL to the runtime by name on the llm
# network; 0600 and the login user's, like every config/*.env), the other
# runtime's container removed when it runs (its compose project of ours in
# OTHER_DIR: two would share the GPU; its weights stay), then this one's
# compose project up.
# `up` pulls the runtime's image (vLLM's about 10 GB) first: it gets TIMEOUT
# seconds, and past them says what hung and what to try.
# Inputs: LLM_DIR; NAME (vLLM, Ollama); LLM_ENV (the stack's config/llm.env);
# LLM_URL; ENV_OWNER; MODEL; KEY_VAR (the key's variable in key.env) or
# PLACEHOLDER_KEY; OTHER_DIR; TIMEOUT.
set -euo pipefail
umask 077
mkdir -p -- "$LLM_DIR"
if [ -n "${KEY_VAR:-}" ]; then
    if [ ! -s "$LLM_DIR/key.env" ]; then
        # 32 random bytes as 64 hex digits: always the same length, no
        # character a URL or an env file would treat specially.
        printf '%s=%s\n' "$KEY_VAR" "$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" >"$LLM_DIR/key.env.tmp"
        mv -- "$LLM_DIR/key.env.tmp" "$LLM_DIR/key.env"
        echo "generated the LLM's API key in $LLM_DIR/key.env"
    fi
    key=$(sed -n "s/^$KEY_VAR=//p" "$LLM_DIR/key.env")
else
    key=$PLACEHOLDER_KEY
fi
printf 'LLM_URL=%s\nLLM_API_KEY=%s\nLLM_MODEL=%s\n' "$LLM_URL" "$key" "$MODEL" >"$LLM_ENV.tmp"
chown -- "$ENV_OWNER" "$LLM_ENV.tmp"
chmod 0600 -- "$LLM_ENV.tmp"
mv -- "$LLM_ENV.tmp" "$LLM_ENV"
if [ -s "$OTHER_DIR/docker-compose.yml" ] &&
    [ -n "$(docker compose --project-directory "$OTHER_DIR" -f "$OTHER_DIR/docker-compose.yml" ps -q 2>/dev/null)" ]; then
    echo "removing the other local LLM's container ($OTHER_DIR): it would hold GPU memory beside $NAME"
    timeout --kill-after=30 300 docker compose --project-directory "$OTHER_DIR" -f "$OTHER_DIR/docker-compose.yml" rm --stop --force
fi
echo "starting $NAME (its image's pull may take minutes; time limit $TIMEOUT s)"
rc=0
timeout --kill-after=30 "$TIMEOUT" docker compose --project-directory "$LLM_DIR" -f "$LLM_DIR/docker-compose.yml" up -d || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "$NAME's compose up (its image's pull, or its start) did not finish within $TIMEOUT s;" \
        "see \`docker compose --project-directory $LLM_DIR ps\` and the Docker daemon's log (journalctl -u docker)," \
        "then run again with a longer --llm-timeout if the pull was only slow" >&2
    exit 1
fi
exit "$rc"
