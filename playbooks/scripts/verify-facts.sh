#!/bin/bash
# Facts `verify` and `update` add to facts.sh and image-facts.sh, in the same
# round trip: the site's domain (from the generated site override, unless
# DOMAIN is given) and, with HTTPS_CHECK=yes and a domain, whether
# https://DOMAIN/health answers through the host's own Traefik: DOMAIN
# resolved to HTTPS_ADDR (curl --resolve), not by DNS, so the check proves
# Traefik's route and certificate, not public DNS or firewalls. Reads only.
# Inputs: BASE_DIR; DOMAIN (optional); HTTPS_CHECK (yes|no); HTTPS_ADDR
# (optional, where Traefik listens; 127.0.0.1 when empty).
set -euo pipefail

verify_kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n' ' ')"; }
site_domain=${DOMAIN:-}
if [ -z "$site_domain" ] && [ -r "$BASE_DIR/site-docker-compose.yml" ]; then
    # shellcheck disable=SC2016 # the backquotes are the rule's, not the shell's
    site_domain=$(grep -o 'routers\.orchestrator\.rule=Host(`[^`]*`)' "$BASE_DIR/site-docker-compose.yml" |
        head -n 1 | sed -e 's/.*Host(.//' -e 's/.)$//' || true)
fi
verify_kv site.domain "$site_domain"
if [ -n "$site_domain" ] && [ "${HTTPS_CHECK:-no}" = yes ]; then
    if body=$(curl -fsS --max-time 10 --resolve "$site_domain:443:${HTTPS_ADDR:-127.0.0.1}" "https://$site_domain/health" 2>&1); then
        verify_kv https.health ok
    else
        verify_kv https.health "failed: $body"
    fi
fi
