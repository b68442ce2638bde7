#!/bin/bash
# The local LLM up: its API key generated once and kept on the host
# (LLM_DIR/key.env, 0600: it never leaves the host), the stack's
# config/llm.env written from it (LLM_URL to vLLM by name on the llm
# network; 0600 and the login user's, like every config/*.env), then vLLM's
# compose project up.
# Inputs: LLM_DIR; LLM_ENV (the stack's config/llm.env); ENV_OWNER; MODEL.
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
docker compose --project-directory "$LLM_DIR" -f "$LLM_DIR/docker-compose.yml" up -d
