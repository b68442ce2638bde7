#!/bin/bash
# The IMAGE stack answers: every service that must run (SERVICES) has a
# running container, healthy where its image declares a health check (the
# orchestrator's is in the compose file), then, when URL is set, GET URL
# answers through the host's own Traefik: URL's host name resolved to
# HTTPS_ADDR (curl --resolve), not by DNS, so the certificate is verified for
# the name and Traefik's route is exercised, whatever public DNS and
# firewalls say (retried: Let's Encrypt's first certificate takes a moment,
# and until then Traefik serves a certificate curl rightly refuses). Behind
# a load balancer URL is http://NAME/PATH, on port 80, with no certificate.
# Past TIMEOUT it names the services that are not well, with their logs'
# last lines.
# Inputs: BASE_DIR; SERVICES (space-separated); TIMEOUT (seconds); URL
# (optional, https://NAME/PATH or http://NAME/PATH); HTTPS_ADDR (optional,
# where Traefik listens; 127.0.0.1 when empty).
set -euo pipefail
compose=(docker compose --project-directory "$BASE_DIR" --env-file "$BASE_DIR/.env")
deadline=$(($(date +%s) + TIMEOUT))

# not_well: "SERVICE STATE" for each of SERVICES not running, or running
# and not healthy, one compose call for all.
not_well() {
    local listing s state health
    listing=$("${compose[@]}" ps -a --format '{{.Service}} {{.State}} {{.Health}}' 2>/dev/null || true)
    for s in $SERVICES; do
        read -r _ state health < <(grep -m 1 "^$s " <<<"$listing" || echo "$s absent") || true
        if [ "$state" != running ]; then
            echo "$s ${state:-absent}"
        elif [ -n "${health:-}" ] && [ "$health" != healthy ]; then
            echo "$s ${health}"
        fi
    done
}
while :; do
    trouble=$(not_well)
    [ -n "$trouble" ] || break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "not running or not healthy after $TIMEOUT s: $(cut -d' ' -f1 <<<"$trouble" | tr '\n' ' ')" >&2
        while read -r s state; do
            echo "--- $s: $state; the last lines of its log:" >&2
            id=$("${compose[@]}" ps -a -q "$s" 2>/dev/null | head -n 1 || true)
            [ -z "$id" ] || docker logs --tail 5 "$id" 2>&1 | sed 's/^/    /' >&2 || true
        done <<<"$trouble"
        exit 1
    fi
    sleep 1
done
echo "$(wc -w <<<"$SERVICES") services running, healthy where their images check"
[ -n "${URL:-}" ] || exit 0
addr=${HTTPS_ADDR:-127.0.0.1}
# https_check: https-check.sh beside this file, put in front of this script
# (the facts make the same check).
until body=$(https_check "$URL" "$addr" 10); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "GET $URL at $addr (this host's Traefik) failed after $TIMEOUT s: $body" >&2
        if [[ $URL == https://* ]]; then
            echo "Traefik serves the name once Let's Encrypt certified it, which needs the name's DNS record pointing at this host and port 80 open to the internet: see \`docker logs traefik\`" >&2
        else
            echo "Traefik routes the name on port 80 once the orchestrator is healthy: see \`docker logs traefik\` and the orchestrator's labels in $BASE_DIR/site-docker-compose.yml" >&2
        fi
        exit 1
    fi
    sleep 3
done
echo "GET $URL at $addr: $body"
