#!/bin/bash
# Waits, up to TIMEOUT seconds, until the local LLM lists MODEL at
# GET /v1/models (the first start downloads the weights; warmup and the
# stack's services call it as soon as they start). The key goes to curl on
# stdin, never on a command line. On time out: the container's state and
# its log's last lines.
# Inputs: LLM_DIR; MODEL; TIMEOUT (seconds).
set -euo pipefail
key=$(sed -n 's/^VLLM_API_KEY=//p' "$LLM_DIR/key.env")
deadline=$((SECONDS + TIMEOUT))
while :; do
    if models=$(printf 'header = "Authorization: Bearer %s"\n' "$key" |
        curl -fsS --max-time 10 -K - http://127.0.0.1:8000/v1/models 2>/dev/null); then
        if jq -e --arg m "$MODEL" 'any(.data[]?; .id == $m)' <<<"$models" >/dev/null; then
            echo "the LLM serves $MODEL after $SECONDS s"
            exit 0
        fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the local LLM does not serve $MODEL after $TIMEOUT s; vllm is $(docker inspect -f '{{.State.Status}}' vllm 2>/dev/null || echo absent); its log ends:" >&2
        docker logs --tail 5 vllm 2>&1 | sed 's/^/  /' >&2 || true
        exit 1
    fi
    sleep 5
done
