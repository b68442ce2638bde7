#!/bin/bash
# Before the stack starts: the LLM that config/llm.env names answers. An
# authenticated GET LLM_URL/models (the OpenAI API's model list, which vLLM,
# Ollama and hosted services serve) must answer 200 and list LLM_MODEL. The
# values are read as compose reads them for the services; the key goes to
# curl in its config on stdin, never on a command line, and is never
# printed.
# Inputs: LLM_ENV (the file); TIMEOUT (seconds, per attempt).
set -euo pipefail

[ -r "$LLM_ENV" ] || { echo "$LLM_ENV is missing: the layout step writes it from --env-file llm.env" >&2; exit 1; }
# The values as the services get them: compose's own env_file reader
# (quotes, `export `, comments, `KEY = value`), on a one-service project
# read from stdin. Its errors are not shown: they can quote a line.
project=$(printf 'services:\n  llm-check:\n    image: llm-check\n    env_file: ["%s"]\n' "$LLM_ENV")
if ! values=$(docker compose --project-name image-provision-llm-check --project-directory "${LLM_ENV%/*}" -f - \
    config --format json <<<"$project" 2>/dev/null); then
    echo "docker compose cannot read $LLM_ENV: check its syntax (KEY=value lines)" >&2
    exit 1
fi
value() { jq -r --arg k "$1" '.services["llm-check"].environment[$k] // empty' <<<"$values"; }
url=$(value LLM_URL)
key=$(value LLM_API_KEY)
model=$(value LLM_MODEL)
for name in LLM_URL LLM_API_KEY LLM_MODEL; do
    if [ -z "$(value "$name")" ]; then
        echo "$LLM_ENV has no $name: the IMAGE services that need the LLM would exit at start" >&2
        exit 1
    fi
done
models_url=${url%/}/models
body=$(mktemp)
trap 'rm -f "$body"' EXIT
# curl's config quoting: a backslash or a double quote in the key escaped.
quoted=${key//\\/\\\\}
quoted=${quoted//\"/\\\"}
code=$(printf 'header = "Authorization: Bearer %s"\n' "$quoted" |
    curl -sS --max-time "$TIMEOUT" --config - -o "$body" -w '%{http_code}' -- "$models_url" 2>"$body.err") || {
    echo "the LLM did not answer: GET $models_url: $(cat "$body.err")" >&2
    rm -f "$body.err"
    exit 1
}
rm -f "$body.err"
case $code in
200) ;;
401 | 403)
    echo "the LLM refused the key: GET $models_url answered HTTP $code; check LLM_API_KEY in llm.env" >&2
    exit 1
    ;;
*)
    echo "the LLM answered GET $models_url with HTTP $code (200 expected); check LLM_URL in llm.env (an OpenAI-compatible base URL, usually ending in /v1)" >&2
    exit 1
    ;;
esac
if ! ids=$(jq -r '.data[].id' "$body" 2>/dev/null); then
    echo "the LLM's GET $models_url answer is not an OpenAI model list (JSON with data[].id); check LLM_URL in llm.env" >&2
    exit 1
fi
if ! grep -qxF -- "$model" <<<"$ids"; then
    echo "the LLM at $url does not serve LLM_MODEL $model; it lists: $(tr '\n' ' ' <<<"$ids")" >&2
    exit 1
fi
echo "LLM at $url serves $model"
