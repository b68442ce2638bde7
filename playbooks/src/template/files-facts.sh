# shellcheck shell=bash
# The generated files' facts (playbooks/src/template): for each path a step
# writes, what is there now, so a step writes only what differs:
#   file.PATH=SHA256 MODE OWNER   a regular file
#   file.PATH=link TARGET         a symbolic link (not followed)
#   file.PATH=other               a directory or another kind of file
#   file.PATH=absent
# and what image-provision's own record says it last wrote there
# (`written.PATH=SHA256`, or `link:TARGET` for a link it made), so a step
# tells its own files from the host's (record-written.sh writes the record);
# and `pending.PATH=yes` for a path written but whose apply has not yet
# succeeded (mark-pending.sh).
# As root: files_facts runs in run_root_facts.
# Inputs: FILES, the space-separated paths; WRITTEN_RECORD, the record;
# PENDING_RECORD, the record of writes not yet applied.

root_facts_env+=(FILES WRITTEN_RECORD PENDING_RECORD)
files_facts() {
    local present=() links=() sum m u f l fp
    local -A mode=() owner=() watched=()
    for f in ${FILES:-}; do
        watched[$f]=1
        if [ -L "$f" ]; then
            links+=("$f")
        elif [ -f "$f" ]; then
            present+=("$f")
        elif [ -e "$f" ]; then
            kv "file.$f" other
        else
            kv "file.$f" absent
        fi
    done
    if [ ${#present[@]} -gt 0 ]; then
        while read -r m u f; do mode[$f]=$m owner[$f]=$u; done < <(stat -c '%a %U %n' -- "${present[@]}")
        while read -r sum f; do kv "file.$f" "$sum ${mode[$f]:-} ${owner[$f]:-}"; done < <(sha256sum -- "${present[@]}")
    fi
    if [ ${#links[@]} -gt 0 ]; then
        # One fork for every link: their targets, tab-separated from the path.
        while IFS=$'\t' read -r f l; do kv "file.$f" "link $l"; done < <(find "${links[@]}" -maxdepth 0 -printf '%p\t%l\n')
    fi
    if [ -n "${WRITTEN_RECORD:-}" ] && [ -f "$WRITTEN_RECORD" ]; then
        while read -r fp f; do
            if [ -n "$f" ] && [ -n "${watched[$f]:-}" ]; then kv "written.$f" "$fp"; fi
        done <"$WRITTEN_RECORD"
    fi
    if [ -n "${PENDING_RECORD:-}" ] && [ -f "$PENDING_RECORD" ]; then
        while read -r f; do
            if [ -n "$f" ] && [ -n "${watched[$f]:-}" ]; then kv "pending.$f" yes; fi
        done <"$PENDING_RECORD"
    fi
}
