# shellcheck shell=bash
# The docker step: its settings in Docker's /etc/docker/daemon.json, merged
# with jq into what is there (every other key stays, nvidia-ctk's runtimes
# among them): max-concurrent-downloads (input DOWNLOADS) and, when MIRROR is
# not empty, registry-mirrors as that one URL (Docker asks a mirror before
# Docker Hub, and only for Docker Hub's images). Made before Docker is
# installed when it is not yet, so that its first start reads it.
set -euo pipefail
config=/etc/docker/daemon.json
mkdir -p /etc/docker
current='{}'
if [ -s "$config" ]; then
    current=$(cat "$config")
fi
# Written beside it and renamed: a daemon starting never reads half a file.
jq --indent 4 --argjson n "$DOWNLOADS" --arg mirror "$MIRROR" '
    .["max-concurrent-downloads"] = $n
    | if $mirror == "" then . else .["registry-mirrors"] = [$mirror] end' <<<"$current" >"$config.tmp"
chmod 0644 "$config.tmp"
mv -f "$config.tmp" "$config"
