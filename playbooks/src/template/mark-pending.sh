#!/bin/bash
# image-provision's record of changes written but not yet applied
# (playbooks/src/template): a step that must apply what it wrote (Traefik's
# `compose up`, systemd's daemon-reload and a timer's restart) marks the
# paths before it writes them and clears them only once the apply
# succeeded. A run cut short in between leaves them marked, and the next
# run, finding the files as wanted, still applies them. One path a line;
# root's and 0600 (beside the record of what was written); replaced
# atomically, so a run cut short leaves the old record or the new one.
# Inputs: PENDING, the record's path; MARK, CLEAR: space-separated paths
# to add to it and to take out of it.
set -euo pipefail
umask 077
mkdir -p -- "${PENDING%/*}"
declare -A drop=() add=()
for p in ${CLEAR:-}; do drop[$p]=1; done
for p in ${MARK:-}; do add[$p]=1; done
tmp=$(mktemp -- "$PENDING.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
{
    if [ -f "$PENDING" ]; then
        while read -r path; do
            if [ -n "$path" ] && [ -z "${drop[$path]:-}" ] && [ -z "${add[$path]:-}" ]; then
                printf '%s\n' "$path"
            fi
        done <"$PENDING"
    fi
    for path in "${!add[@]}"; do printf '%s\n' "$path"; done
} >"$tmp"
if [ -s "$tmp" ]; then mv -f -- "$tmp" "$PENDING"; else rm -f -- "$PENDING"; fi
trap - EXIT
