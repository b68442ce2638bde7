#!/bin/bash
# Add an apt repository with its signing key, as apt's own docs advise: the
# key in /etc/apt/keyrings, referenced by signed-by, so it vouches for this
# repository only. Writes only what differs.
# Inputs: NAME (file name part), SOURCE ("URI SUITE [COMPONENT...]"),
# KEY_URL (an ASCII-armored OpenPGP key, fetched with curl: https:// or file://).
set -euo pipefail

keyring=/etc/apt/keyrings/image-provision-$NAME.asc
list=/etc/apt/sources.list.d/image-provision-$NAME.list

# Bounded: 15 s to connect, 60 s an attempt (a key is a few KB).
key=$(curl -fsSL --connect-timeout 15 --max-time 60 --retry 3 "$KEY_URL") || {
    echo "cannot download the signing key of the $NAME repository from $KEY_URL within 60 s (3 retries):" \
        "check the host's network and DNS, then run again" >&2
    exit 1
}
case $key in
"-----BEGIN PGP PUBLIC KEY BLOCK-----"*) ;;
*)
    echo "$KEY_URL is not an ASCII-armored OpenPGP public key (expected -----BEGIN PGP PUBLIC KEY BLOCK-----)" >&2
    exit 1
    ;;
esac
install -d -m 0755 /etc/apt/keyrings
if [ ! -e "$keyring" ] || [ "$(cat "$keyring")" != "$key" ]; then
    printf '%s\n' "$key" >"$keyring.tmp"
    chmod 0644 "$keyring.tmp"
    mv -f "$keyring.tmp" "$keyring"
fi

line="deb [signed-by=$keyring] $SOURCE"
content="# Added by image-provision bootstrap.
$line"
if [ ! -e "$list" ] || [ "$(cat "$list")" != "$content" ]; then
    printf '%s\n' "$content" >"$list.tmp"
    chmod 0644 "$list.tmp"
    mv -f "$list.tmp" "$list"
fi
