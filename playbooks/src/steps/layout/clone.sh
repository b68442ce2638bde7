#!/bin/bash
# The IMAGE-server clone, over HTTPS, with its `schemas` submodule. The
# submodule's URL in .gitmodules is an SSH URL (git@github.com:...), and a
# fresh host has no GitHub key: root's global git config rewrites it to
# HTTPS (imageup, run as root, updates the submodule again later).
# Inputs: BASE_DIR, REPO_URL (HTTPS), BRANCH.
set -euo pipefail
export HOME=/root
clone=$BASE_DIR/IMAGE-server

if ! git config --global --get-all url.https://github.com/.insteadof | grep -qxF 'git@github.com:'; then
    git config --global --add url.https://github.com/.insteadOf git@github.com:
fi

if [ ! -d "$clone/.git" ]; then
    # Cloned aside and moved into place: an interrupted clone never looks
    # like a finished one to the next run.
    rm -rf -- "$clone.partial"
    mkdir -p -- "$BASE_DIR"
    git clone --quiet --branch "$BRANCH" -- "$REPO_URL" "$clone.partial"
    mv -- "$clone.partial" "$clone"
elif [ "$(git -C "$clone" config --get remote.origin.url || true)" != "$REPO_URL" ]; then
    git -C "$clone" remote set-url origin "$REPO_URL"
fi
git -C "$clone" submodule --quiet update --init
echo "IMAGE-server at $(git -C "$clone" rev-parse --short HEAD) ($(git -C "$clone" rev-parse --abbrev-ref HEAD)), schemas at $(git -C "$clone/schemas" rev-parse --short HEAD)"
