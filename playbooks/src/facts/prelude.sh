#!/bin/bash
# The facts prelude: what every facts script sent in the one facts round trip
# shares. The facts command (playbooks/src/gather.rs) is this prelude, root's
# shell opened (facts_root_open: sudo starts beside the parts), the host's
# facts and each step's facts script, each followed by a facts_root_send of
# the root functions it defines (root's shell runs them beside the later
# parts), then one call of run_root_facts with every root function (it
# sends the end and reads root's answer), then what ran beside root's part read
# (facts_after_root_run): one `key=value` per line (values are single
# lines), one sudo for all that needs root (each sudo costs tens of
# milliseconds: PAM, logging). What is slow and independent (dockerd's
# answers, systemd's, nvidia-smi, the HTTPS check) runs in the background
# and is read when needed.
set -euo pipefail

# The C locale, here and in root's shell (root_facts_env, below): the facts
# read what programs print for programs, and bash's pattern matching on a
# long text (dockerd's JSON, the script root's shell reads) runs several
# times slower in a UTF-8 locale (a server's usual LANG, which sudo keeps).
export LC_ALL=C

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
# rename), its owner's only (an answer may be a hash of a file that is).
# Best effort: an unwritable cache only costs the next run the slow way.
# Not with FACTS_CACHE_WRITE=no (a dry run, which writes nothing on the
# host, not even a cache).
facts_cache_put() {
    [ "${FACTS_CACHE_WRITE:-yes}" != no ] || return 0
    (umask 077 && mkdir -p "${1%/*}" && printf '%s\n%s\n' "${2//$'\n'/ }" "$3" >"$1.$$" && mv -f "$1.$$" "$1") \
        2>/dev/null || true
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

# facts_split ARRAY TEXT SEPARATOR: TEXT's fields between SEPARATOR bytes
# into ARRAY (a whitespace separator, a line break or a tab, drops empty
# fields). Word splitting, in bash's C: `read` from a here-string or a
# pipe takes a byte at a time (20 ms for a stack's containers).
facts_split() {
    local - IFS=$3
    set -f
    # shellcheck disable=SC2206 # split on IFS on purpose, globbing off
    eval "$1"'=($2)'
}

# facts_status_split TEXT: TEXT, an answer followed by a line holding its
# exit status (as a background command left it), into facts_answer (its
# trailing line breaks dropped) and facts_status.
facts_status_split() {
    facts_status=${1##*$'\n'}
    facts_answer=${1%$'\n'*}
    while [[ $facts_answer == *$'\n' ]]; do facts_answer=${facts_answer%$'\n'}; done
}

# facts_os_release: /etc/os-release's fields (ID, VERSION_ID, ...) into
# facts_os, once, read in bash: sourcing the file would need a subshell (a
# fork) to keep its names out of ours. Values as the shell would give them:
# quotes taken off, and in double quotes the escapes of \", \\, \$ and \`.
declare -A facts_os=()
facts_os_release() {
    [ -z "${facts_os_done:-}" ] || return 0
    facts_os_done=yes
    facts_read /etc/os-release || facts_read /usr/lib/os-release || return 0
    local text=$facts_file$'\n' line value re='^([A-Za-z_][A-Za-z0-9_]*)=(.*)$'
    while [[ $text == *$'\n'* ]]; do
        line=${text%%$'\n'*}
        text=${text#*$'\n'}
        [[ $line =~ $re ]] || continue
        value=${BASH_REMATCH[2]}
        case $value in
        \"*\")
            value=${value:1:${#value}-2}
            value=${value//$'\\\\'/$'\x01'}
            value=${value//'\"'/'"'}
            value=${value//'\$'/'$'}
            value=${value//'\`'/'`'}
            value=${value//$'\x01'/$'\\'}
            ;;
        \'*\') value=${value:1:${#value}-2} ;;
        esac
        facts_os[${BASH_REMATCH[1]}]=$value
    done
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

# systemd's units whose state the facts report: a facts script adds them to
# facts_units (full names: docker.service), and reads their states after
# root's part (facts_after_root) with facts_units_read. One `systemctl
# show` for all of them (each systemctl start costs 5 to 15 ms), started by
# run_root_facts so that it runs beside root's part.
facts_units=()
declare -A facts_unit_enabled=() facts_unit_active=()
facts_units_start() {
    [ ${#facts_units[@]} -gt 0 ] && [ -z "${facts_units_fd:-}" ] || return 0
    exec {facts_units_fd}< <(systemctl show --property=Id,LoadState,UnitFileState,ActiveState -- "${facts_units[@]}" \
        2>/dev/null || true)
}

# facts_units_read: the states of facts_units (once), in
# facts_unit_enabled[UNIT] and facts_unit_active[UNIT], as `systemctl
# is-enabled` and `systemctl is-active` word them; none for a unit systemd
# did not answer for.
facts_units_read() {
    [ -z "${facts_units_done:-}" ] || return 0
    facts_units_done=yes
    local out=''
    facts_units_start
    [ -n "${facts_units_fd:-}" ] || return 0
    out=$(</dev/fd/"$facts_units_fd") || true
    exec {facts_units_fd}<&-
    facts_units_parse "$out" "${facts_units[@]}"
}

# facts_units_parse TEXT UNIT...: TEXT, what `systemctl show --property=
# Id,LoadState,UnitFileState,ActiveState -- UNIT...` printed (a block per
# unit in the order asked, each starting with its Id: the first property
# systemd prints), into facts_unit_enabled and facts_unit_active.
# is-enabled prints the unit file's state (UnitFileState), or not-found
# when there is no unit; is-active the ActiveState.
facts_units_parse() {
    local text=$1 line i=-1 load='' file='' active=''
    shift
    local -a units=("$@")
    text+=$'\nId=\n'
    while [[ $text == *$'\n'* ]]; do
        line=${text%%$'\n'*}
        text=${text#*$'\n'}
        case $line in
        Id=*)
            if [ "$i" -ge 0 ] && [ "$i" -lt ${#units[@]} ]; then
                if [ -z "$file" ] && [ "$load" = not-found ]; then file=not-found; fi
                facts_unit_enabled[${units[$i]}]=$file
                facts_unit_active[${units[$i]}]=$active
            fi
            i=$((i + 1)) load='' file='' active=''
            ;;
        LoadState=*) load=${line#LoadState=} ;;
        UnitFileState=*) file=${line#UnitFileState=} ;;
        ActiveState=*) active=${line#ActiveState=} ;;
        esac
    done
}

# A facts script whose root functions call functions of their own adds them
# to root_facts_helpers; one whose root functions read inputs adds their
# names to root_facts_env (sudo resets the environment; none is a secret).
root_facts_helpers=(kv facts_cache_get facts_cache_put facts_read facts_split)
root_facts_env=(LC_ALL FACTS_CACHE_WRITE)

# The root shell: opened first thing (facts_root_open, which the facts
# command calls right after this prelude), so that sudo's start (PAM,
# logging: tens of milliseconds) runs beside the user's parts instead of
# after them. Each part's root functions are sent to it as soon as the part
# has run (facts_root_send, which the facts command calls after each part
# with root functions), and run there, in the parts' order, beside the later
# parts; a part may send a start of its own earlier (facts_root_early).
# run_root_facts sends what is left and the end, then reads root's answer.
# facts_root_how: root (the SSH user is root), missing (no sudo) or sudo.
facts_root_how=''
# The functions root's shell has been sent (facts_root_chunk), and those it
# has been told to run (facts_root_send).
declare -A facts_root_sent=() facts_root_called=()
facts_root_open() {
    [ -z "$facts_root_how" ] || return 0
    if [ "$EUID" -eq 0 ]; then
        facts_root_how=root
    elif ! command -v sudo >/dev/null 2>&1; then
        facts_root_how=missing
    else
        facts_root_how=sudo
        # The functions go to root's bash on stdin, not on its command line,
        # which sudo logs in full. Root's answer is held here whole until
        # root's shell exits, then printed with its exit status on the last
        # line: root prints as it runs, while this shell is still sending
        # it chunks and reads the answer only at the end, so an answer
        # left in the pipe could fill it, stop root, and with it the sends.
        # (Not `set -e`'s exit: the status is printed whatever it is.)
        coproc facts_root_co {
            facts_root_rc=0
            facts_root_answer=$(exec sudo -n env ROOT_FACTS_VIA=sudo bash -s 2>/dev/null) || facts_root_rc=$?
            printf '%s\n%s\n' "$facts_root_answer" "$facts_root_rc"
        }
        # Copies: bash closes a coprocess's own descriptors once it exits,
        # which would lose an answer not read yet.
        exec {facts_root_in}>&"${facts_root_co[1]}" {facts_root_out}<&"${facts_root_co[0]}"
        # Root's bash reads these first lines a byte at a time (as bash
        # reads a script from a pipe): facts_split and a loop that reads the
        # rest with `read -N`, in blocks: chunks of script, each ended by a
        # \x1d byte (no script of ours holds a raw control character) and
        # a block's worth of padding, so that the block holding the end is
        # filled and read now, not when the next chunk comes. Each chunk is
        # run as it is complete, in the loop's function (its locals named so
        # that no root function meets them). The input is never closed: the
        # subshells started in the background hold this pipe open too.
        # shellcheck disable=SC2016 # root's shell expands it
        facts_root_write '' '
facts_root_loop() { local facts_root_block facts_root_chunk facts_root_whole; facts_root_pending=; while LC_ALL=C IFS= read -r -N 1024 facts_root_block; do facts_root_pending+=$facts_root_block; [[ $facts_root_block == *$'"'"'\x1d'"'"'* ]] || continue; facts_root_whole=; [[ $facts_root_block != *$'"'"'\x1d'"'"' ]] || facts_root_whole=yes; facts_split facts_root_chunks "$facts_root_pending" $'"'"'\x1d'"'"'; facts_root_pending=; if [ -z "$facts_root_whole" ]; then facts_root_pending=${facts_root_chunks[-1]}; unset '"'"'facts_root_chunks[-1]'"'"'; fi; for facts_root_chunk in "${facts_root_chunks[@]}"; do eval "$facts_root_chunk"; done; done; }
facts_root_loop; exit' facts_split
        facts_root_sent[facts_split]=1
    fi
}

# facts_root_write BEFORE AFTER FUNCTION...: BEFORE, the FUNCTIONs'
# definitions and AFTER to root's shell, as they are. Written straight to the
# pipe: capturing `declare -f` would fork this shell. A sudo that refused (a
# password asked) has gone: the write fails, quietly, and without the
# SIGPIPE that would end this shell.
facts_root_write() {
    trap '' PIPE
    {
        printf '%s' "$1"
        [ $# -le 2 ] || declare -f "${@:3}"
        printf '%s\n' "$2"
    } 1>&"$facts_root_in" 2>/dev/null || true
    trap - PIPE
}

# facts_root_inputs: the inputs root's functions read (root_facts_env, set
# so far), as assignments for root's shell (sudo resets the environment;
# none is a secret), each once, and again only if it changed since.
declare -A facts_root_passed=()
facts_root_inputs() {
    local name value
    facts_root_text=''
    # ${a[@]+...}: an empty array under `set -u` before bash 4.4.
    for name in ${root_facts_env[@]+"${root_facts_env[@]}"}; do
        printf -v value '%q' "${!name:-}"
        [ "${facts_root_passed[$name]-}" != "$value" ] || continue
        facts_root_passed[$name]=$value
        facts_root_text+="export $name=$value"$'\n'
    done
}

# facts_root_chunk CALLS FUNCTION...: one chunk to root's shell (above):
# the inputs set so far, the helpers (root_facts_helpers) defined here and
# not sent yet, the FUNCTIONs, then CALLS, all in braces (bash reads all of
# it before running any, and a command reading stdin cannot eat the rest).
facts_root_chunk() {
    local calls=$1 f end
    local -a defs=()
    shift
    for f in ${root_facts_helpers[@]+"${root_facts_helpers[@]}"} "$@"; do
        if [ -n "${facts_root_sent[$f]:-}" ] || ! declare -F "$f" >/dev/null; then continue; fi
        facts_root_sent[$f]=1
        defs+=("$f")
    done
    facts_root_inputs
    printf -v end '%s} </dev/null\n\x1d%1024s' "$calls" ''
    facts_root_write "{"$'\n'"$facts_root_text" "$end" ${defs[@]+"${defs[@]}"}
}

# facts_root_early FUNCTION: FUNCTION (which prints nothing: root's answer
# starts with its `sudo` line) started in root's shell now, to leave
# something for the root functions (a request started in the background,
# read later). Run here when the SSH user is root; not at all without root.
facts_root_early() {
    case $facts_root_how in
    root) "$1" ;;
    sudo) facts_root_chunk "cd / && $1"$'\n' "$1" ;;
    esac
}

# facts_root_send FUNCTION...: the functions sent to root's shell and run
# there now, in order (a later one may read what an earlier one left); the
# first chunk of them starts root's answer with its `sudo` line (root's
# shell prints it, so sudo let us in, and a function that fails after it is
# not a refused sudo). With the SSH user root, they wait for
# run_root_facts.
facts_root_send() {
    [ "$facts_root_how" = sudo ] || return 0
    local calls='' f
    if [ -z "${facts_root_begun:-}" ]; then
        facts_root_begun=yes
        calls=$'set -euo pipefail\nkv sudo nopasswd\ncd /\n'
    fi
    for f in "$@"; do
        facts_root_called[$f]=1
        calls+="$f"$'\n'
    done
    facts_root_chunk "$calls" "$@"
}

# run_root_facts FUNCTION...: every root function, in the parts' order: those
# not sent yet are sent (facts_root_send), then the end; root's answer read
# and printed, with how the user gets root as `sudo` (root, nopasswd,
# password or missing). As root itself, they run here one after another in
# one subshell.
run_root_facts() {
    local out f
    local -a rest=()
    facts_root_open
    facts_units_start
    case $facts_root_how in
    root)
        kv sudo root
        (cd / && for f in "$@"; do "$f"; done)
        ;;
    missing) kv sudo missing ;;
    sudo)
        for f in "$@"; do
            [ -n "${facts_root_called[$f]:-}" ] || rest+=("$f")
        done
        if [ ${#rest[@]} -gt 0 ] || [ -z "${facts_root_begun:-}" ]; then facts_root_send ${rest[@]+"${rest[@]}"}; fi
        facts_root_chunk $'exit\n'
        # Whole, in blocks, once root's shell has exited.
        out=$(</dev/fd/"$facts_root_out") || true
        exec {facts_root_in}>&- {facts_root_out}<&-
        facts_status_split "$out"
        if [ "$facts_status" = 0 ] || [[ $facts_answer == sudo=nopasswd* ]]; then
            printf '%s\n' "$facts_answer"
        else
            kv sudo password
        fi
        ;;
    esac
}
