#!/bin/bash
# Waits, up to TIMEOUT seconds in all, until the local LLM lists MODEL at
# GET /v1/models, before the stack starts (warmup and the stack's services
# call it as soon as they start). vLLM downloads its weights as it starts.
# Ollama (PULL=yes) starts empty: once it answers, MODEL is pulled through
# its API (POST /api/pull, unless GET /api/tags lists it already), its
# progress said as it goes (each tenth of each layer), then loaded onto the
# GPU (POST /api/generate with no prompt), so that it takes its memory
# before IMAGE's GPU services start. The key goes to curl on stdin, never
# on a command line. On time out: the container's state and its log's last
# lines.
# Inputs: LLM_DIR; CONTAINER; PORT; MODEL; KEY_VAR (vLLM's key in key.env)
# or PLACEHOLDER_KEY; PULL (yes|no); TIMEOUT (seconds).
set -euo pipefail
if [ -n "${KEY_VAR:-}" ]; then
    key=$(sed -n "s/^$KEY_VAR=//p" "$LLM_DIR/key.env")
else
    key=$PLACEHOLDER_KEY
fi
base=http://127.0.0.1:$PORT
deadline=$((SECONDS + TIMEOUT))
give_up() {
    local state
    state=$(docker inspect -f '{{.State.Status}}' "$CONTAINER" 2>/dev/null) || state=absent
    echo "$1; $CONTAINER is $state; its log ends:" >&2
    docker logs --tail 5 "$CONTAINER" 2>&1 | sed 's/^/  /' >&2 || true
    exit 1
}
left() { echo $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); }
models() {
    printf 'header = "Authorization: Bearer %s"\n' "$key" | curl -fsS --max-time 10 -K - "$base/v1/models" 2>/dev/null
}
listed() { jq -e --arg m "$MODEL" 'any(.data[]?; .id == $m)' >/dev/null; }
# Ollama's pull API: one JSON object a line, an error as one even after a
# 200. Said: each status once, a layer's progress at each tenth; failed
# unless the last is "success".
pull_progress() {
    jq -r --unbuffered 'def size: if . >= 1e9 then "\(. / 1e8 | floor / 10) GB" elif . >= 1e6 then "\(. / 1e6 | floor) MB"
            else "\(. / 1e3 | floor) kB" end;
        if .error then "error: \(.error)"
        elif .total and .completed then "\(.status): \((.completed * 10 / .total | floor) * 10)% of \(.total | size)"
        else .status end' |
        awk '$0 != last { print; fflush(); last = $0 } END { exit last != "success" }'
}
while :; do
    if list=$(models); then
        if [ "${PULL:-no}" = yes ]; then
            if ! curl -fsS --max-time 10 "$base/api/tags" | jq -e --arg m "$MODEL" 'any(.models[]?; .name == $m)' >/dev/null; then
                echo "pulling $MODEL (time limit $(left) s)"
                curl -sS -N --max-time "$(left)" -H 'Content-Type: application/json' \
                    -d "$(jq -nc --arg m "$MODEL" '{model: $m, stream: true}')" "$base/api/pull" | pull_progress ||
                    give_up "Ollama did not pull $MODEL (above: what it said)"
            fi
            # Loaded now, and kept (OLLAMA_KEEP_ALIVE): it takes its GPU
            # memory before IMAGE's services start.
            curl -fsS --max-time "$(left)" -H 'Content-Type: application/json' \
                -d "$(jq -nc --arg m "$MODEL" '{model: $m}')" "$base/api/generate" >/dev/null ||
                give_up "Ollama did not load $MODEL"
            list=$(models) || list='{}'
        fi
        if listed <<<"$list"; then
            echo "the LLM serves $MODEL after $SECONDS s"
            exit 0
        fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        give_up "the local LLM does not serve $MODEL after $TIMEOUT s"
    fi
    sleep 5
done
