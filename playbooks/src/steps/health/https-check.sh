# shellcheck shell=bash
# A library, not a script: the one HTTPS health check, put in front of the
# health step's facts script (facts.sh beside this file: bootstrap's facts,
# verify and update) and of health.sh (the health step's wait).

# https_check URL ADDR SECONDS: GET URL (https://NAME/PATH) with NAME
# resolved to ADDR (curl --resolve), not by DNS: the host's own Traefik, so
# the check proves Traefik's route and the certificate for NAME, whatever
# public DNS and firewalls say. An http:// URL (TLS ends in a load balancer
# in front of the host) goes to port 80, with no certificate to prove.
# Prints the answer's body, or curl's error; fails when the request does.
https_check() {
    local name=${1#*://} port=443 ca=(/etc/ssl/certs/*.0)
    [[ $1 != http://* ]] || port=80
    name=${name%%/*}
    if [ "$port" = 443 ] && [ -f "${ca[0]}" ]; then
        # The system's trusted certificates from their hashed directory,
        # which OpenSSL reads by name as the chain needs them, instead of
        # the bundle curl reads whole by default (OpenSSL 3 spends some 30
        # ms of CPU parsing its 150 certificates, on every check):
        # update-ca-certificates makes both from the same set. --cacert
        # must name a file too: one of that set.
        curl -fsS --max-time "$3" --cacert "${ca[0]}" --capath /etc/ssl/certs --resolve "$name:$port:$2" "$1" 2>&1
    else
        curl -fsS --max-time "$3" --resolve "$name:$port:$2" "$1" 2>&1
    fi
}
