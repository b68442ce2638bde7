#!/bin/bash
# The facts prelude: what every facts script sent in the one facts round trip
# shares. The facts command (playbooks/src/gather.rs) is this prelude, then
# the host's facts and each step's facts script, then one call of
# run_root_facts with every root function they define: one `key=value` per
# line (values are single lines), one sudo for all that needs root (each
# sudo costs tens of milliseconds: PAM, logging).
set -euo pipefail

# Forks cost a millisecond or two each and the facts run before every step
# that acts and on every re-run: kv and the reads in the facts scripts stay
# inside bash where they can.
kv() { printf '%s=%s\n' "$1" "${2//$'\n'/ }"; }

# Answers that are slow to get but depend only on files are kept in a
# cache file: its first line the key (those files' stat or hash, made by
# the caller), the answer after it. The SSH user's cache is under its home,
# root's under /var/cache.
facts_user_cache=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/image-provision

# facts_cache_get FILE KEY: (KEY's lines are joined by spaces, here and in
# facts_cache_put) the answer FILE holds for KEY, into
# facts_cached; fails when FILE is missing or holds another key. Reads in
# bash, no fork.
facts_cache_get() {
    local line
    facts_cached=''
    [ -f "$1" ] && [ -r "$1" ] || return 1
    {
        IFS= read -r line && [ "$line" = "${2//$'\n'/ }" ] || return 1
        IFS= read -r -d '' facts_cached || true
    } <"$1"
    facts_cached=${facts_cached%$'\n'}
}

# facts_cache_put FILE KEY ANSWER: kept for the next run, written whole (a
# rename). Best effort: an unwritable cache only costs the next run the
# slow way. Not with FACTS_CACHE_WRITE=no (a dry run, which writes nothing
# on the host, not even a cache).
facts_cache_put() {
    [ "${FACTS_CACHE_WRITE:-yes}" != no ] || return 0
    { mkdir -p "${1%/*}" && printf '%s\n%s\n' "${2//$'\n'/ }" "$3" >"$1.$$" && mv -f "$1.$$" "$1"; } 2>/dev/null || true
}

# facts_read FILE: FILE's text as $(cat FILE) gives it (its trailing line
# breaks dropped) into facts_file, without a fork; fails, leaving it empty,
# when FILE is not a file it can read.
facts_read() {
    facts_file=''
    [ -f "$1" ] && [ -r "$1" ] || return 1
    IFS= read -r -d '' facts_file <"$1" || true
    while [[ $facts_file == *$'\n' ]]; do facts_file=${facts_file%$'\n'}; done
}

# A facts script that starts something in the background (a request that
# waits on the network) adds the function that prints its answer to
# facts_after_root: the command calls them after root's part, which they
# run beside.
facts_after_root=()
facts_after_root_run() {
    local f
    for f in ${facts_after_root[@]+"${facts_after_root[@]}"}; do "$f"; done
}

# A facts script whose root functions call functions of their own adds them
# to root_facts_helpers; one whose root functions read inputs adds their
# names to root_facts_env (sudo resets the environment; none is a secret).
root_facts_helpers=(kv facts_cache_get facts_cache_put facts_read)
root_facts_env=(FACTS_CACHE_WRITE)

# run_root_facts FUNCTION...: the functions, as root, with kv, the helpers
# and the inputs they read; reports how the user gets root as `sudo` (root,
# nopasswd, password or missing). The functions run one after another in one
# shell, so one may leave a variable for a later one.
run_root_facts() {
    local out name
    local -a inputs=()
    local -A passed=()
    # ${a[@]+...}: an empty array under `set -u` before bash 4.4.
    for name in ${root_facts_env[@]+"${root_facts_env[@]}"}; do
        [ -z "${passed[$name]:-}" ] || continue
        passed[$name]=1
        inputs+=("$name=${!name:-}")
    done
    if [ "$EUID" -eq 0 ]; then
        kv sudo root
        (cd / && for f in "$@"; do "$f"; done)
    elif ! command -v sudo >/dev/null 2>&1; then
        kv sudo missing
    # The functions go to root's bash on stdin, not on its command line,
    # which sudo logs in full. In braces, so bash reads all of it before
    # running any (a command reading stdin cannot eat the rest). The first
    # line, printed as root, says sudo let us in: a function that fails
    # after it is not a refused sudo.
    elif out=$(
        {
            echo '{'
            declare -f "${root_facts_helpers[@]}" "$@"
            printf 'set -euo pipefail\nkv sudo nopasswd\ncd /\n'
            printf '%q\n' "$@"
            echo '}'
        } | sudo -n env ROOT_FACTS_VIA=sudo ${inputs[@]+"${inputs[@]}"} bash -s 2>/dev/null
    ) || [[ $out == sudo=nopasswd* ]]; then
        printf '%s\n' "$out"
    else
        kv sudo password
    fi
}
