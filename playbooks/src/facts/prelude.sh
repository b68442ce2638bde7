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

# A facts script whose root functions call functions of their own adds them
# to root_facts_helpers; one whose root functions read inputs adds their
# names to root_facts_env (sudo resets the environment; none is a secret).
root_facts_helpers=(kv)
root_facts_env=()

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
