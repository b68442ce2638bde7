#!/bin/bash
# Every config/*.env file compose will read exists (empty when unused: compose
# refuses to start a service whose env_file is missing) and is readable by
# root only (they hold credentials). Existing content is never touched.
# Inputs: BASE_DIR.
set -euo pipefail
base=$BASE_DIR
clone=$BASE_DIR/IMAGE-server
# The same list as image-facts.sh (a test checks the two copies agree).
    # BEGIN compose-env-files
    names=$({
        grep -ho 'config/[A-Za-z0-9_.-]*\.env' "$base/docker-compose.yml" "$base/site-docker-compose.yml" 2>/dev/null |
            sed 's|^config/||' || true
        printf '%s\n' express-common.env maps.env llm.env apis-and-selection.env azure-api.env imageup.env
    } | sort -u)
    # END compose-env-files
umask 077
for f in $names; do
    if [ ! -f "$clone/config/$f" ]; then
        : >"$clone/config/$f"
        echo "created empty config/$f"
    fi
    chmod 0600 "$clone/config/$f"
done
