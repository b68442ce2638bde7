#!/bin/bash
# After a step's writes: image-provision's record of what it wrote
# (playbooks/src/template), one `FINGERPRINT PATH` line a path, the last
# write only: the sha256 of the content it uploaded, or `link:TARGET` for a
# link it made. The files facts read it back; before a step replaces what
# is at one of its paths it keeps a copy (keep-copies.sh) unless this record
# shows that image-provision wrote it. Root's and 0600 (it holds the hashes
# of secret files); replaced atomically, so a run cut short leaves the old
# record or the new one.
# Inputs: RECORD, the record's path; WRITTEN, space-separated
# PATH=FINGERPRINT words.
set -euo pipefail
umask 077
mkdir -p -- "${RECORD%/*}"
declare -A new=()
for w in $WRITTEN; do new[${w%%=*}]=${w#*=}; done
tmp=$(mktemp -- "$RECORD.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
{
    if [ -f "$RECORD" ]; then
        while read -r fp path; do
            if [ -n "$path" ] && [ -z "${new[$path]:-}" ]; then printf '%s %s\n' "$fp" "$path"; fi
        done <"$RECORD"
    fi
    for path in "${!new[@]}"; do printf '%s %s\n' "${new[$path]}" "$path"; done
} >"$tmp"
mv -f -- "$tmp" "$RECORD"
trap - EXIT
