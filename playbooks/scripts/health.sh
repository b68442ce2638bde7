#!/bin/bash
# The IMAGE stack answers: the orchestrator container is healthy (its own
# healthcheck), then, when URL is set, GET URL answers through Traefik
# (retried: Let's Encrypt's first certificate takes a moment, and until then
# Traefik serves a certificate curl rightly refuses).
# Inputs: BASE_DIR; TIMEOUT (seconds); URL (optional).
set -euo pipefail
compose=(docker compose --project-directory "$BASE_DIR" --env-file "$BASE_DIR/.env")
deadline=$(($(date +%s) + TIMEOUT))
status=absent
while :; do
    id=$("${compose[@]}" ps -q orchestrator | head -n 1 || true)
    if [ -n "$id" ]; then
        status=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
    fi
    [ "$status" != healthy ] || break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "the orchestrator container is $status after $TIMEOUT s" >&2
        "${compose[@]}" ps >&2 || true
        exit 1
    fi
    sleep 1
done
echo "orchestrator healthy"
[ -n "${URL:-}" ] || exit 0
until body=$(curl -fsS --max-time 10 "$URL" 2>&1); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "GET $URL failed after $TIMEOUT s: $body" >&2
        echo "check that the name resolves to this host, that ports 80 and 443 are open, and \`docker logs traefik\`" >&2
        exit 1
    fi
    sleep 3
done
echo "GET $URL: $body"
