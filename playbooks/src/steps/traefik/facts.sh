# shellcheck shell=bash
# The traefik step's facts (playbooks/src/steps/traefik): the ACME directory
# the running configuration asks for certificates (from its compose file;
# `traefik.acme=no` for ours behind a load balancer: no certresolver),
# and whether certificates are stored (acme.json), so that switching between
# Let's Encrypt's staging and production clears the ones the other issued.
# As root (Traefik's directory is root's): traefik_facts runs in
# root's shell (facts_root_send).
# Inputs: TRAEFIK_DIR.

root_facts_env+=(TRAEFIK_DIR)
traefik_facts() {
    local compose=$TRAEFIK_DIR/docker-compose.yml server=''
    if facts_read "$compose"; then
        if [[ $facts_file != *certificatesresolvers.* && $facts_file == *forwardedHeaders.trustedIPs=* ]]; then
            # Ours behind a load balancer: no certresolver, no ACME server asked.
            kv traefik.acme no
        else
            # The first acme.caserver=... (up to a quote or the line's end),
            # in bash, as `grep -o ... | head -n 1` found it.
            local re=$'acme\\.caserver=([^"\n]*)'
            [[ ! $facts_file =~ $re ]] || server=${BASH_REMATCH[1]}
            # A compose file without the line asks Traefik's default: production.
            kv traefik.acme_server "$server"
        fi
        kv traefik.configured yes
    fi
    if [ -s "$TRAEFIK_DIR/letsencrypt/acme.json" ]; then kv traefik.certificates yes; else kv traefik.certificates no; fi
}
