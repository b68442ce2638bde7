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
    local name=${1#*://} port=443
    [[ $1 != http://* ]] || port=80
    name=${name%%/*}
    curl -fsS --max-time "$3" --resolve "$name:$port:$2" "$1" 2>&1
}
