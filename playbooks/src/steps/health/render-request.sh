#!/bin/bash
# The request that proves the stack, not only the orchestrator's constant
# /health: POST REQUEST (a graphic request, valid against IMAGE's
# request.schema.json) to /render/preprocess, through this host's own
# Traefik when URL is set (its host name resolved to HTTPS_ADDR, as
# health.sh does), else to the orchestrator's address on the `image`
# network. The orchestrator runs every preprocessor it finds by label and
# answers with their outputs under `preprocessors`; each id in REQUIRE must
# be there. Prints "result: ..." (which answered, how long) for the summary.
# The graphic differs on every request (a nonce in a PNG text chunk): the
# orchestrator's cache, keyed by the graphic, cannot answer it.
# Inputs: BASE_DIR; REQUEST (JSON); REQUIRE (ids, space-separated; may be
# empty); LLM_SERVICES (the services that need the LLM, named when REQUIRE's
# are missing; may be empty); TIMEOUT (seconds); URL (optional, https:// or,
# behind a load balancer, http://); HTTPS_ADDR (optional).
set -euo pipefail
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
if [ -n "${URL:-}" ]; then
    name=${URL#*://}
    name=${name%%/*}
    # Port 80 for an http:// URL: TLS ends in a load balancer in front.
    port=443
    [[ $URL != http://* ]] || port=80
    target=(--resolve "$name:$port:${HTTPS_ADDR:-127.0.0.1}" "$URL")
    where="$URL (through this host's Traefik)"
else
    id=$(docker compose --project-directory "$BASE_DIR" --env-file "$BASE_DIR/.env" ps -q orchestrator | head -n 1)
    ip=''
    [ -z "$id" ] || ip=$(docker inspect -f '{{with index .NetworkSettings.Networks "image"}}{{.IPAddress}}{{end}}' "$id")
    if [ -z "$ip" ]; then
        echo "the orchestrator has no address on the image network: is it running? (\`docker compose ps\` in $BASE_DIR)" >&2
        exit 1
    fi
    url="http://$ip:8080/render/preprocess"
    target=("$url")
    where="$url (the orchestrator on the image network)"
fi
start=$(date +%s%N)
if ! code=$(curl -sS --max-time "$TIMEOUT" -o "$answer" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary @- "${target[@]}" <<<"$REQUEST" 2>&1); then
    echo "POST $where failed: $code" >&2
    exit 1
fi
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$code" != 200 ]; then
    echo "POST $where answered HTTP $code after $ms ms: $(head -c 400 "$answer")" >&2
    exit 1
fi
if ! answered=$(jq -r '.preprocessors // {} | keys[]' "$answer" 2>/dev/null | tr '\n' ' '); then
    echo "POST $where answered 200 without a JSON object of preprocessors: $(head -c 400 "$answer")" >&2
    exit 1
fi
answered=${answered% }
missing=''
for want in $REQUIRE; do
    [[ " $answered " == *" $want "* ]] || missing="$missing $want"
done
if [ -n "$missing" ]; then
    if [ -n "${LLM_SERVICES:-}" ]; then
        echo "POST $where answered in $ms ms, but without:$missing (answered: ${answered:-none}): the LLM services ($LLM_SERVICES) did not answer: is the LLM at config/llm.env's LLM_URL up? see \`docker compose logs $LLM_SERVICES\` in $BASE_DIR" >&2
    else
        echo "POST $where answered in $ms ms, but without:$missing (answered: ${answered:-none}); see their logs (\`docker compose logs\` in $BASE_DIR)" >&2
    fi
    exit 1
fi
echo "result: POST /render/preprocess answered in $ms ms by $(wc -w <<<"$answered") preprocessors: ${answered:-none}"
