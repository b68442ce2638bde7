# shellcheck shell=bash
# The docker step: root's Docker logged in to Docker Hub (dockerhub.env), so
# that pulls of Docker Hub's images count against the account and not the
# anonymous limit Docker Hub sets per address. The token goes to
# `docker login --password-stdin` on its standard input, from bash's own
# printf (a builtin: no process's command line holds it), and out of the
# environment first so that docker does not inherit it. docker keeps the
# login in /root/.docker/config.json (0600).
# Inputs: DOCKERHUB_USERNAME; DOCKERHUB_TOKEN (secret: sent on stdin by the
# command runner, never on a command line).
set -euo pipefail
token=$DOCKERHUB_TOKEN
unset DOCKERHUB_TOKEN
# docker login's own wait is long; Docker Hub answers in seconds.
if ! out=$(printf '%s' "$token" | timeout 120 docker login --username "$DOCKERHUB_USERNAME" --password-stdin 2>&1); then
    printf '%s\n' "$out" >&2
    echo "docker login to Docker Hub as $DOCKERHUB_USERNAME failed: check dockerhub.env's DOCKERHUB_USERNAME and DOCKERHUB_TOKEN (a personal access token with read access)" >&2
    exit 1
fi
# Without docker's advice about a credential helper.
grep -v -i 'unencrypted\|credential helper\|credentials-store\|^$' <<<"$out" || true
