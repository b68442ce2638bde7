#!/bin/bash
# Before Traefik first asks for DOMAIN's certificate: DOMAIN resolves to
# this server's public ADDRESS. Let's Encrypt's HTTP challenge goes wherever
# DNS points, and its rate limits count failed validations per account and
# name; a certificate asked for too early fails, and Traefik then serves its
# default certificate with no word about DNS. Asks the host's resolver
# (getent: /etc/hosts, then DNS), its cache flushed first where
# systemd-resolved keeps one; re-checks every 5 s up to TIMEOUT, then fails
# naming the record to create.
# Inputs: DOMAIN; ADDRESS (the server's public IPv4 address); TIMEOUT (seconds).
set -euo pipefail
record="$DOMAIN. A $ADDRESS"
answers() {
    resolvectl flush-caches >/dev/null 2>&1 || true
    getent ahostsv4 "$DOMAIN" 2>/dev/null | awk '{ print $1 }' | sort -u | paste -sd ' ' - || true
}
deadline=$((SECONDS + TIMEOUT))
told=no
while :; do
    got=$(answers)
    case " $got " in
    *" $ADDRESS "*)
        echo "$DOMAIN resolves to $ADDRESS"
        exit 0
        ;;
    esac
    if [ "$told" = no ]; then
        echo "$DOMAIN resolves to ${got:-nothing}, not to this server ($ADDRESS): create the DNS record $record; waiting up to $TIMEOUT s" >&2
        told=yes
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "$DOMAIN still resolves to ${got:-nothing} after $TIMEOUT s, not to this server. Create this record where $DOMAIN's DNS is served, then run again: $record" >&2
        exit 1
    fi
    sleep 5
done
