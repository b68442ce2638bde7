#!/bin/bash
# Before a step replaces what image-provision did not write
# (playbooks/src/template): a copy of each of COPIES under BACKUP_DIR (the
# run's directory, named by its UTC time) at its own path, e.g.
# BACKUP_DIR/var/docker/traefik/docker-compose.yml, as it is: content,
# mode, owner and times kept, a symbolic link copied as the link. The
# directories made are root's alone (0700), so a secret's copy stays as
# closed as the secret. A copy already there is kept when it is the same (a
# step retried in the same run) and never overwritten when it differs.
# Inputs: BACKUP_DIR; COPIES, the space-separated paths.
set -euo pipefail
umask 077
for f in $COPIES; do
    if [ ! -e "$f" ] && [ ! -L "$f" ]; then
        echo "$f is gone: nothing to keep"
        continue
    fi
    copy=$BACKUP_DIR$f
    if [ -e "$copy" ] || [ -L "$copy" ]; then
        if [ -L "$f" ] && [ -L "$copy" ] && [ "$(readlink -- "$f")" = "$(readlink -- "$copy")" ]; then
            echo "$f: already kept as $copy"
            continue
        elif [ ! -L "$f" ] && [ ! -L "$copy" ] && cmp -s -- "$f" "$copy"; then
            echo "$f: already kept as $copy"
            continue
        fi
        echo "$copy exists and differs from $f: $f is left as it is (run again for a new copy)" >&2
        exit 1
    fi
    mkdir -p -- "${copy%/*}"
    cp -a -- "$f" "$copy"
    echo "kept $f as $copy"
done
