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
# As root: files_facts runs in root's shell (facts_root_send).
# Inputs: FILES, the space-separated paths; WRITTEN_RECORD, the record;
# PENDING_RECORD, the record of writes not yet applied; FILES_CACHE, root's
# cache of the files' hashes (empty: none).
#
# The facts run before every step that acts and on every re-run, and the
# files seldom change: a file's hash is kept in FILES_CACHE beside its
# stat (inode, size, mtime and ctime to the nanosecond), and hashed again
# only when that changed. ctime cannot be set back by a write, so a write
# shows; one within the clock's tick of the hash would not, so a file
# changed in the last second or two is hashed and not kept (as git does with
# its index).

root_facts_env+=(FILES WRITTEN_RECORD PENDING_RECORD FILES_CACHE)
root_facts_helpers+=(files_facts_keep)
files_facts() {
    local present=() f kind mu key ctime target sum
    local -A watched=() mode_owner=() stat_key=() settled=() cached_key=() cached_sum=() sums=()
    for f in ${FILES:-}; do
        watched[$f]=1
        if [ -L "$f" ] || [ -f "$f" ]; then
            present+=("$f")
        elif [ -e "$f" ]; then
            kv "file.$f" other
        else
            kv "file.$f" absent
        fi
    done
    if [ ${#present[@]} -gt 0 ]; then
        # One stat for every file and link (not followed): its kind, mode and
        # owner, the cache's key, ctime's second, and %N, literally, which
        # for a link is "PATH -> TARGET". Its output and the cache are split
        # in bash (facts_split: `read` would take them a byte at a time).
        local now=$EPOCHSECONDS out='' line
        local -a lines=() fields=()
        out=$(QUOTING_STYLE=literal exec stat --printf '%n\t%F\t%a %U\t%i %s %y %z\t%Z\t%N\n' -- "${present[@]}" 2>/dev/null) ||
            true
        facts_split lines "$out" $'\n'
        for line in ${lines[@]+"${lines[@]}"}; do
            facts_split fields "$line" $'\t'
            if [ ${#fields[@]} -lt 6 ] || [ -z "${watched[${fields[0]}]:-}" ]; then continue; fi
            f=${fields[0]} kind=${fields[1]} mu=${fields[2]} key=${fields[3]} ctime=${fields[4]} target=${fields[5]}
            case $kind in
            'symbolic link') kv "file.$f" "link ${target#"$f -> "}" ;;
            regular*)
                mode_owner[$f]=$mu stat_key[$f]=$key
                if [[ $ctime =~ ^[0-9]+$ ]] && [ "$ctime" -lt $((now - 1)) ]; then settled[$f]=1; fi
                ;;
            *) kv "file.$f" other ;;
            esac
        done
        if [ -n "${FILES_CACHE:-}" ] && facts_cache_get "$FILES_CACHE" v1; then
            facts_split lines "$facts_cached" $'\n'
            for line in ${lines[@]+"${lines[@]}"}; do
                facts_split fields "$line" $'\t'
                [ ${#fields[@]} -eq 3 ] || continue
                cached_key[${fields[0]}]=${fields[1]} cached_sum[${fields[0]}]=${fields[2]}
            done
        fi
        local stale=() keep=''
        for f in "${!stat_key[@]}"; do
            if [ -n "${settled[$f]:-}" ] && [ "${cached_key[$f]:-}" = "${stat_key[$f]}" ]; then
                sums[$f]=${cached_sum[$f]}
            else
                stale+=("$f")
                [ -z "${settled[$f]:-}" ] || keep=yes
            fi
        done
        if [ ${#stale[@]} -gt 0 ]; then
            while read -r sum f; do sums[$f]=$sum; done < <(sha256sum -- "${stale[@]}")
            [ -z "$keep" ] || files_facts_keep
        fi
        for f in "${present[@]}"; do
            [ -z "${sums[$f]:-}" ] || kv "file.$f" "${sums[$f]} ${mode_owner[$f]:-}"
        done
    fi
    if [ -n "${WRITTEN_RECORD:-}" ] && [ -f "$WRITTEN_RECORD" ]; then
        while read -r sum f; do
            if [ -n "$f" ] && [ -n "${watched[$f]:-}" ]; then kv "written.$f" "$sum"; fi
        done <"$WRITTEN_RECORD"
    fi
    if [ -n "${PENDING_RECORD:-}" ] && [ -f "$PENDING_RECORD" ]; then
        while read -r f; do
            if [ -n "$f" ] && [ -n "${watched[$f]:-}" ]; then kv "pending.$f" yes; fi
        done <"$PENDING_RECORD"
    fi
}

# files_facts_keep: (files_facts' locals) the settled files' hashes into
# FILES_CACHE (facts_cache_put: one line a file, PATH, stat and hash
# tab-separated, after the key line), with the entries of other paths it
# held (another command watches other files).
files_facts_keep() {
    [ -n "${FILES_CACHE:-}" ] || return 0
    local text='' f
    for f in "${!cached_key[@]}"; do
        [ -n "${stat_key[$f]:-}" ] || text+="$f"$'\t'"${cached_key[$f]}"$'\t'"${cached_sum[$f]}"$'\n'
    done
    for f in "${!settled[@]}"; do
        [ -z "${sums[$f]:-}" ] || text+="$f"$'\t'"${stat_key[$f]}"$'\t'"${sums[$f]}"$'\n'
    done
    facts_cache_put "$FILES_CACHE" v1 "${text%$'\n'}"
}
