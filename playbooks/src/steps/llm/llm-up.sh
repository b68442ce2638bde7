#!/bin/bash
# The local LLM up: its API key generated once and kept on the host
# (LLM_DIR/key.env, 0600: it never leaves the host), the stack's
# config/llm.env written from it (LLM_URL to vLLM by name on the llm
# network; 0600 and the login user's, like every config/*.env), then vLLM's
# compose project up.
# `up` pulls vLLM's image (about 10 GB) first: it gets TIMEOUT seconds,
# and past them says what hung and what to try.
# Inputs: LLM_DIR; LLM_ENV (the stack's config/llm.env); ENV_OWNER; MODEL;
# TIMEOUT.
set -euo pipefail
umask 077
mkdir -p -- "$LLM_DIR/huggingface"
if [ ! -s "$LLM_DIR/key.env" ]; then
    # 32 random bytes as 64 hex digits: always the same length, no character
    # a URL or an env file would treat specially.
    printf 'VLLM_API_KEY=%s\n' "$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" >"$LLM_DIR/key.env.tmp"
    mv -- "$LLM_DIR/key.env.tmp" "$LLM_DIR/key.env"
    echo "generated the LLM's API key in $LLM_DIR/key.env"
fi
key=$(sed -n 's/^VLLM_API_KEY=//p' "$LLM_DIR/key.env")
printf 'LLM_URL=http://vllm:8000/v1\nLLM_API_KEY=%s\nLLM_MODEL=%s\n' "$key" "$MODEL" >"$LLM_ENV.tmp"
chown -- "$ENV_OWNER" "$LLM_ENV.tmp"
chmod 0600 -- "$LLM_ENV.tmp"
mv -- "$LLM_ENV.tmp" "$LLM_ENV"
echo "starting vLLM (its image's pull may take minutes; time limit $TIMEOUT s)"
rc=0
timeout --kill-after=30 "$TIMEOUT" docker compose --project-directory "$LLM_DIR" -f "$LLM_DIR/docker-compose.yml" up -d || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "vLLM's compose up (its image's pull, or its start) did not finish within $TIMEOUT s;" \
        "see \`docker compose --project-directory $LLM_DIR ps\` and the Docker daemon's log (journalctl -u docker)," \
        "then run again with a longer --llm-timeout if the pull was only slow" >&2
    exit 1
fi
exit "$rc"
