# shellcheck shell=bash
# A library, not a script: dockerd asked through its socket, ONCE per facts
# command (playbooks/src/containers), instead of a docker CLI start per
# question (each costs 50 to 200 ms, the compose plugin more). Put in front
# of dockerd-early.sh, early in the facts command, which has root's shell
# start the request; the docker step's and the containers' root functions
# read the answers. Only curl is started,
# and the JSON is read in bash (no jq or other interpreter on the hot path).
# When there is no socket (the chroot test hosts' stand-in docker), no curl,
# or an answer not in the shape read here, the callers ask the docker CLI
# as before: the answers are the same, only slower.

# Where the docker CLI reaches the daemon when DOCKER_HOST is not set.
docker_api_socket=/var/run/docker.sock
root_facts_env+=(docker_api_socket)
root_facts_helpers+=(docker_api_start docker_api_ask docker_api_plain docker_api_unescaped docker_api_runtimes
    docker_api_listing docker_api_label docker_api_after docker_api_network_names)

# docker_api_start: GET /info, /containers/json?all=1 and /networks in one
# curl, within 20 s each (a daemon that is restarting must not hang the
# facts), started in the background (root's shell starts it as soon as it
# is up: facts_root_early, from dockerd-early.sh), its answer read
# by docker_api_ask. Nothing without the socket or curl.
docker_api_start() {
    [ -S "$docker_api_socket" ] && command -v curl >/dev/null 2>&1 || return 0
    # Each answer is followed by a record separator, its HTTP status and
    # another: JSON carries no raw control character.
    # (`exec`: no second fork.)
    exec {docker_api_fd}< <(exec curl -s --fail-early --max-time 20 --unix-socket "$docker_api_socket" \
        -w $'\x1e%{http_code}\x1e' http://docker/info 'http://docker/containers/json?all=1' http://docker/networks \
        2>/dev/null)
}

# docker_api_ask: dockerd's answers (docker_api_start's, started now if it
# was not); the first call reads them, later calls in the same shell reuse
# them. Sets docker_api_answered (yes: every answer was 200),
# docker_api_info, docker_api_containers and docker_api_networks (each one
# line of JSON). Fails when the socket or curl is missing: ask the CLI.
docker_api_ask() {
    if [ -n "${docker_api_answered:-}" ]; then
        return 0
    fi
    [ -S "$docker_api_socket" ] && command -v curl >/dev/null 2>&1 || return 1
    local out=''
    local -a fields
    [ -n "${docker_api_fd:-}" ] || docker_api_start
    # Whole, in blocks (`read` would take a pipe a byte at a time).
    out=$(</dev/fd/"$docker_api_fd") || true
    exec {docker_api_fd}<&-
    facts_split fields "$out" $'\x1e'
    docker_api_answered=no
    if [ "${fields[1]:-}" = 200 ] && [ "${fields[3]:-}" = 200 ] && [ "${fields[5]:-}" = 200 ]; then
        docker_api_answered=yes
    fi
    docker_api_info=${fields[0]%$'\n'}
    docker_api_containers=${fields[2]%$'\n'}
    docker_api_networks=${fields[4]%$'\n'}
}

# docker_api_plain JSON: JSON with its two escapes that can hide a quote
# (\\ and \") replaced by \x01 and \x02, in docker_api_text: then every
# '"' left delimits a string, so a pattern anchored on quotes matches
# structure only, never the inside of a string.
docker_api_plain() {
    docker_api_text=${1//$'\\\\'/$'\x01'}
    docker_api_text=${docker_api_text//$'\\"'/$'\x02'}
}

# docker_api_unescaped VALUE...: each value is as the CLI would print it
# (no escape left in it); else ask the CLI.
docker_api_unescaped() {
    local v
    for v in "$@"; do
        [[ $v != *[$'\x01\x02\\']* ]] || return 1
    done
}

# docker_api_runtimes: the daemon's runtimes as `docker info --format
# '{{json .Runtimes}}'` prints them, in docker_api_runtimes_json. dockerd
# writes its struct's fields in order, Runtimes just before DefaultRuntime.
docker_api_runtimes() {
    docker_api_plain "$docker_api_info"
    [[ $docker_api_text =~ \"Runtimes\":(\{.*\}),\"DefaultRuntime\":\" ]] || return 1
    docker_api_runtimes_json=${BASH_REMATCH[1]//$'\x01'/$'\\\\'}
    docker_api_runtimes_json=${docker_api_runtimes_json//$'\x02'/$'\\"'}
}

# docker_api_listing: what `docker ps -a --format` with the containers
# facts' template prints (PROJECT<TAB>WORKING_DIR<TAB>SERVICE<TAB>STATE
# <TAB>NAME<TAB>STATUS, a line each, newest first), in docker_api_listed.
# Every container's object starts with its Id (and only those: no other
# object in the answer has Id as its first key), its one name follows, and
# Labels, State and Status come in that order (dockerd's struct). A label
# map's keys and values are strings, so a label is `,"KEY":"VALUE",` in
# it. Fails on anything else (two names, an escape in a value used): the CLI.
docker_api_listing() {
    local chunk rest labels name state status project dir service
    local -a chunks
    docker_api_listed=''
    docker_api_plain "$docker_api_containers"
    [ "$docker_api_text" != '[]' ] || return 0
    [[ $docker_api_text == '[{"Id":"'*'}]' ]] || return 1
    docker_api_text=${docker_api_text#'[{"Id":"'}
    docker_api_text=${docker_api_text//'},{"Id":"'/$'\x1e'}
    facts_split chunks "$docker_api_text" $'\x1e'
    # Parameter expansions, not regular expressions: several times faster
    # on a stack's worth of JSON.
    for chunk in "${chunks[@]}"; do
        [[ $chunk =~ ^[0-9a-f]+\",\"Names\":\[\"/([^\"/]*)\"\], ]] || return 1
        name=${BASH_REMATCH[1]}
        docker_api_after rest "$chunk" '"Labels":' || return 1
        case $rest in
        'null,"State":"'*) labels='' rest=${rest#'null,"State":"'} ;;
        '{'*) docker_api_after rest "$rest" '},"State":"' labels || return 1 ;;
        *) return 1 ;;
        esac
        state=${rest%%'"'*}
        rest=${rest:${#state}}
        [[ $rest == '","Status":"'*'"'* ]] || return 1
        rest=${rest#'","Status":"'}
        status=${rest%%'"'*}
        labels=",${labels#'{'},"
        docker_api_label project com.docker.compose.project
        docker_api_label dir com.docker.compose.project.working_dir
        docker_api_label service com.docker.compose.service
        docker_api_unescaped "$name" "$state" "$status" "$project" "$dir" "$service" || return 1
        docker_api_listed+="$project"$'\t'"$dir"$'\t'"$service"$'\t'"$state"$'\t'"$name"$'\t'"$status"$'\n'
    done
    docker_api_listed=${docker_api_listed%$'\n'}
}

# docker_api_label VAR KEY: into VAR, the value of the label KEY in the
# caller's `labels` (",PAIRS,", plain), or empty.
docker_api_label() {
    local v=''
    if docker_api_after v "$labels" ',"'"$2"'":"'; then
        v=${v%%'"'*}
    fi
    printf -v "$1" '%s' "$v"
}

# docker_api_after VAR TEXT MARK [BEFORE]: into VAR, what follows the first
# MARK in TEXT (and into BEFORE what precedes it); fails without one.
# ${TEXT#*MARK} would do, but bash tries every prefix for it: quadratic.
docker_api_after() {
    local before=${2%%"$3"*}
    [ "${#before}" -lt "${#2}" ] || return 1
    printf -v "$1" '%s' "${2:${#before}+${#3}}"
    [ -z "${4:-}" ] || printf -v "$4" '%s' "$before"
}

# docker_api_network_names: the networks' names, sorted, space-separated
# (what `docker network ls --format '{{.Name}}' | sort` lists), in
# docker_api_networks_listed. Each network's object starts with its Name,
# then its Id.
docker_api_network_names() {
    local chunk i j
    local -a chunks names=()
    docker_api_plain "$docker_api_networks"
    [[ $docker_api_text == '[{"Name":"'*'}]' ]] || return 1
    docker_api_text=${docker_api_text#'[{"Name":"'}
    docker_api_text=${docker_api_text//'},{"Name":"'/$'\x1e'}
    facts_split chunks "$docker_api_text" $'\x1e'
    for chunk in "${chunks[@]}"; do
        [[ $chunk =~ ^([^\"]*)\",\"Id\":\" ]] && docker_api_unescaped "${BASH_REMATCH[1]}" || return 1
        names+=("${BASH_REMATCH[1]}")
    done
    # An insertion sort: a handful of names, and no sort(1) to start.
    for ((i = 1; i < ${#names[@]}; i++)); do
        for ((j = i; j > 0; j--)); do
            [[ ${names[j]} < ${names[j - 1]} ]] || break
            chunk=${names[j]} names[j]=${names[j - 1]} names[j - 1]=$chunk
        done
    done
    local IFS=' '
    # shellcheck disable=SC2034 # read by containers_facts
    docker_api_networks_listed="${names[*]}"
}
