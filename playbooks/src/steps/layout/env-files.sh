#!/bin/bash
# Every config/*.env file compose will read exists (empty when unused: compose
# refuses to start a service whose env_file is missing), is 0600 (they hold
# credentials) and belongs to the login user: compose reads env files as the
# user who runs it, and the IMAGE guide has people run compose as themselves
# (root reads them all the same). Existing content is never touched.
# Inputs: BASE_DIR; ENV_OWNER, the login user.
set -euo pipefail
base=$BASE_DIR
clone=$BASE_DIR/IMAGE-server
# compose_env_files: compose-env-files.sh beside this file, put in front of
# this script (the layout step's facts report on the same list).
names=$(compose_env_files "$base")
umask 077
for f in $names; do
    if [ ! -f "$clone/config/$f" ]; then
        : >"$clone/config/$f"
        echo "created empty config/$f"
    fi
    chown -- "$ENV_OWNER" "$clone/config/$f"
    chmod 0600 "$clone/config/$f"
done
