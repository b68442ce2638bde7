# shellcheck shell=bash
# The health step's facts (playbooks/src/steps/health), also verify's and
# update's: the site's domain (DOMAIN, or the one the generated site override
# routes), where its TLS ends (TLS_END, or as the site override routes it:
# the orchestrator on the plain HTTP entrypoint `web` means a load balancer
# in front ends it) and, with HTTPS_CHECK=yes, whether SCHEME://DOMAIN/health
# answers through the host's own Traefik (https_check: https-check.sh beside
# this file, put in front of this script; https, or http on port 80 behind a
# load balancer), as health.https: `ok`, or `failed: ` and curl's error.
# Reads only; runs as the SSH user.
# With CERTIFICATE=yes (verify and update only: it costs a TLS handshake),
# the certificate Traefik serves for the domain, when Traefik ends TLS: its
# issuer and its end (health.cert_issuer, health.cert_not_after, ISO 8601).
# Inputs: BASE_DIR; DOMAIN (optional); TLS_END (traefik|balancer, optional);
# HTTPS_CHECK (yes|no); HTTPS_ADDR (where Traefik listens; 127.0.0.1 when
# empty); CERTIFICATE (yes|no).

site_domain=${DOMAIN:-}
site_tls_end=${TLS_END:-}
if { [ -z "$site_domain" ] || [ -z "$site_tls_end" ]; } && facts_read "$BASE_DIR/site-docker-compose.yml"; then
    # shellcheck disable=SC2016 # the backquotes are the rule's, not the shell's
    site_rule='routers\.orchestrator\.rule=Host\(`([^`]*)`\)'
    if [ -z "$site_domain" ] && [[ $facts_file =~ $site_rule ]]; then
        site_domain=${BASH_REMATCH[1]}
    fi
    if [ -z "$site_tls_end" ] && [[ $facts_file == *'routers.orchestrator.entrypoints=web"'* ]]; then
        site_tls_end=balancer
    fi
fi
site_tls_end=${site_tls_end:-traefik}
site_scheme=https
[ "$site_tls_end" != balancer ] || site_scheme=http
kv health.domain "$site_domain"
kv health.tls_end "$site_tls_end"
if [ -n "$site_domain" ] && [ "${HTTPS_CHECK:-no}" = yes ]; then
    # Started now and read after root's part (facts_after_root), so the
    # request through Traefik runs beside it. A pipe holds the short answer
    # (curl's, then its exit status on a line of its own) until it is read.
    exec {health_https_fd}< <(
        rc=0
        https_check "$site_scheme://$site_domain/health" "${HTTPS_ADDR:-127.0.0.1}" 10 || rc=$?
        printf '\n%s' "$rc"
    )
    health_https_answer() {
        local answer=''
        IFS= read -r -d '' answer <&"$health_https_fd" || true
        exec {health_https_fd}<&-
        if [ -z "$answer" ]; then
            kv health.https ''
            return 0
        fi
        facts_status_split "$answer"
        if [ "$facts_status" = 0 ]; then
            kv health.https ok
        else
            kv health.https "failed: $facts_answer"
        fi
    }
    facts_after_root+=(health_https_answer)
fi
# Behind a load balancer this host serves no certificate: none to read.
if [ -n "$site_domain" ] && [ "$site_scheme" = https ] && [ "${CERTIFICATE:-no}" = yes ] &&
    command -v openssl >/dev/null 2>&1; then
    cert=$(timeout 10 openssl s_client -connect "${HTTPS_ADDR:-127.0.0.1}:443" -servername "$site_domain" \
        </dev/null 2>/dev/null | openssl x509 -noout -issuer -enddate -dateopt iso_8601 -nameopt oneline 2>/dev/null || true)
    while IFS='=' read -r key value; do
        case $key in
        issuer) kv health.cert_issuer "${value# }" ;;
        notAfter) kv health.cert_not_after "$value" ;;
        esac
    done <<<"$cert"
fi
