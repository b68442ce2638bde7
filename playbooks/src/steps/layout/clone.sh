#!/bin/bash
# The IMAGE-server clone, over HTTPS, with its `schemas` submodule. The
# submodule's URL in .gitmodules is an SSH URL (git@github.com:...), and a
# fresh host has no GitHub key: root's global git config rewrites it to
# HTTPS (imageup, run as root, updates the submodule again later).
# A private repository's credentials (--repo-credentials) stay in their own
# root-only file, CREDENTIALS_FILE, in git's credential store format: the
# clone's config and its submodule's name git's `store` helper with that
# file, so every git in the clone (this script's, imageup's fetch and pull
# under `bash -x`, the nightly update's) asks it, and the token is never in
# a URL, a command line, a config or a log. The helper list starts with an
# empty value, which drops any helper root's or the system's config names:
# none of them is asked, or told the token to keep.
# Inputs: BASE_DIR, REPO_URL (HTTPS), BRANCH; CREDENTIALS_FILE, the
# credentials' path on the host; USE_CREDENTIALS, yes (the file is there:
# use it) or no (stop using it where this script set it up).
set -euo pipefail
export HOME=/root
# No prompt for a user name nobody can answer: a repository that wants
# credentials it does not get fails at once.
export GIT_TERMINAL_PROMPT=0
clone=$BASE_DIR/IMAGE-server
helper="store --file=$CREDENTIALS_FILE"
with_credentials=()
if [ "$USE_CREDENTIALS" = yes ]; then
    with_credentials=(-c credential.helper= -c "credential.helper=$helper")
fi

if ! git config --global --get-all url.https://github.com/.insteadof | grep -qxF 'git@github.com:'; then
    git config --global --add url.https://github.com/.insteadOf git@github.com:
fi

# helpers DIR: the credential helpers of DIR's own git config, each after a
# '|' (as the layout facts report them).
helpers() {
    git -C "$1" config --local --get-all credential.helper | sed 's/^/|/' | tr -d '\n' || true
}

# use_credentials DIR: DIR's own config names exactly our helper, or, with
# USE_CREDENTIALS=no, no longer does (another helper set there by hand is
# left alone).
use_credentials() {
    local dir=$1 now
    [ -e "$dir/.git" ] || return 0
    now=$(helpers "$dir")
    if [ "$USE_CREDENTIALS" = yes ] && [ "$now" != "||$helper" ]; then
        git -C "$dir" config --local --unset-all credential.helper || true
        git -C "$dir" config --local --add credential.helper ''
        git -C "$dir" config --local --add credential.helper "$helper"
        echo "git in ${dir#"$BASE_DIR"/} reads the repository credentials from $CREDENTIALS_FILE"
    elif [ "$USE_CREDENTIALS" != yes ] && [ "$now" = "||$helper" ]; then
        git -C "$dir" config --local --unset-all credential.helper
        echo "git in ${dir#"$BASE_DIR"/} no longer reads $CREDENTIALS_FILE"
    fi
}

if [ ! -d "$clone/.git" ]; then
    # Cloned aside and moved into place: an interrupted clone never looks
    # like a finished one to the next run.
    rm -rf -- "$clone.partial"
    mkdir -p -- "$BASE_DIR"
    if ! git "${with_credentials[@]}" clone --quiet --branch "$BRANCH" -- "$REPO_URL" "$clone.partial"; then
        if [ "$USE_CREDENTIALS" = yes ]; then
            echo "the clone failed with the credentials in $CREDENTIALS_FILE (--repo-credentials): is the token" \
                "valid, and allowed to read $REPO_URL?" >&2
        else
            echo "the clone failed; if the repository is private, give its credentials with --repo-credentials PATH" >&2
        fi
        exit 1
    fi
    mv -- "$clone.partial" "$clone"
elif [ "$(git -C "$clone" config --get remote.origin.url || true)" != "$REPO_URL" ]; then
    git -C "$clone" remote set-url origin "$REPO_URL"
fi
use_credentials "$clone"
# `-c` reaches the submodule's own clone too (git passes it on).
git "${with_credentials[@]}" -C "$clone" submodule --quiet update --init
use_credentials "$clone/schemas"
echo "IMAGE-server at $(git -C "$clone" rev-parse --short HEAD) ($(git -C "$clone" rev-parse --abbrev-ref HEAD)), schemas at $(git -C "$clone/schemas" rev-parse --short HEAD)"
