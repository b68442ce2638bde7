#!/bin/bash
# The IMAGE stack answers: the orchestrator container is healthy (its own
# healthcheck), then, when URL is set, GET URL answers through the host's own
# Traefik: URL's host name resolved to HTTPS_ADDR (curl --resolve), not by
# DNS, so the certificate is verified for the name and Traefik's route is
# exercised, whatever public DNS and firewalls say (retried: Let's Encrypt's
# first certificate takes a moment, and until then Traefik serves a
# certificate curl rightly refuses).
# Inputs: BASE_DIR; TIMEOUT (seconds); URL (optional, https://NAME/PATH);
# HTTPS_ADDR (optional, where Traefik listens; 127.0.0.1 when empty).
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
addr=${HTTPS_ADDR:-127.0.0.1}
# https_check: https-check.sh beside this file, put in front of this script
# (the facts make the same check).
until body=$(https_check "$URL" "$addr" 10); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "GET $URL at $addr (this host's Traefik) failed after $TIMEOUT s: $body" >&2
        echo "Traefik serves the name once Let's Encrypt certified it, which needs the name's DNS record pointing at this host and port 80 open to the internet: see \`docker logs traefik\`" >&2
        exit 1
    fi
    sleep 3
done
echo "GET $URL at $addr: $body"
