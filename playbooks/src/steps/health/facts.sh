# shellcheck shell=bash
# The health step's facts (playbooks/src/steps/health), also verify's and
# update's: the site's domain (DOMAIN, or the one the generated site override
# routes) and, with HTTPS_CHECK=yes, whether https://DOMAIN/health answers
# through the host's own Traefik (https_check: https-check.sh beside this
# file, put in front of this script), as health.https: `ok`, or `failed: `
# and curl's error. Reads only; runs as the SSH user.
# With CERTIFICATE=yes (verify and update only: it costs a TLS handshake),
# the certificate Traefik serves for the domain: its issuer and its end
# (health.cert_issuer, health.cert_not_after, ISO 8601).
# Inputs: BASE_DIR; DOMAIN (optional); HTTPS_CHECK (yes|no); HTTPS_ADDR
# (where Traefik listens; 127.0.0.1 when empty); CERTIFICATE (yes|no).

site_domain=${DOMAIN:-}
if [ -z "$site_domain" ] && [ -r "$BASE_DIR/site-docker-compose.yml" ]; then
    # shellcheck disable=SC2016 # the backquotes are the rule's, not the shell's
    site_domain=$(grep -o 'routers\.orchestrator\.rule=Host(`[^`]*`)' "$BASE_DIR/site-docker-compose.yml" |
        head -n 1 | sed -e 's/.*Host(.//' -e 's/.)$//' || true)
fi
kv health.domain "$site_domain"
if [ -n "$site_domain" ] && [ "${HTTPS_CHECK:-no}" = yes ]; then
    # Started now and read after root's part (facts_after_root), so the
    # request through Traefik runs beside it. A pipe holds the short answer
    # until it is read.
    exec {health_https_fd}< <(
        if answer=$(https_check "https://$site_domain/health" "${HTTPS_ADDR:-127.0.0.1}" 10); then
            echo ok
        else
            echo "failed: $answer"
        fi
    )
    health_https_answer() {
        local answer=''
        IFS= read -r -d '' answer <&"$health_https_fd" || true
        exec {health_https_fd}<&-
        kv health.https "${answer%$'\n'}"
    }
    facts_after_root+=(health_https_answer)
fi
if [ -n "$site_domain" ] && [ "${CERTIFICATE:-no}" = yes ] && command -v openssl >/dev/null 2>&1; then
    cert=$(timeout 10 openssl s_client -connect "${HTTPS_ADDR:-127.0.0.1}:443" -servername "$site_domain" \
        </dev/null 2>/dev/null | openssl x509 -noout -issuer -enddate -dateopt iso_8601 -nameopt oneline 2>/dev/null || true)
    while IFS='=' read -r key value; do
        case $key in
        issuer) kv health.cert_issuer "${value# }" ;;
        notAfter) kv health.cert_not_after "$value" ;;
        esac
    done <<<"$cert"
fi
