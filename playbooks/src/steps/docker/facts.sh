# shellcheck shell=bash
# The docker step's facts (playbooks/src/steps/docker): the CLI, compose v2,
# the service, daemon.json's max-concurrent-downloads and registry-mirrors,
# the docker group, whether the SSH user reaches the daemon, and (as root)
# the daemon's runtimes and root's Docker Hub login. The user's part runs
# as the SSH user, docker_root_facts as root (facts_root_send). Hot path: one
# stat, no systemctl of its own (the facts' one `systemctl show`), no docker
# CLI start, no jq (cached answers; dockerd asked through its socket by
# root, beside the rest).

# One stat for the files both cached answers below depend on (the CLI's
# versions; daemon.json's settings, read with jq), its lines told apart by
# name: each key is its files' lines, as a stat of its own would print them.
docker_cli_files=() docker_daemon_files=() docker_lines=() docker_cli_key='' docker_daemon_key=''
if hash docker 2>/dev/null; then
    docker_cli_files=("${BASH_CMDS[docker]}" "${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}"/{config.json,cli-plugins/docker-compose}
        /usr/local/lib/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose
        /usr/lib/docker/cli-plugins/docker-compose /usr/libexec/docker/cli-plugins/docker-compose)
fi
if [ -r /etc/docker/daemon.json ] && hash jq 2>/dev/null; then
    docker_daemon_files=(/etc/docker/daemon.json "${BASH_CMDS[jq]}")
fi
if [ $((${#docker_cli_files[@]} + ${#docker_daemon_files[@]})) -gt 0 ]; then
    # (`exec`: no second fork for the redirection.)
    docker_stat=$(exec stat -L -c '%n %i %s %y' -- ${docker_cli_files[@]+"${docker_cli_files[@]}"} \
        ${docker_daemon_files[@]+"${docker_daemon_files[@]}"} 2>/dev/null) || true
    facts_split docker_lines "$docker_stat" $'\n'
    for docker_line in ${docker_lines[@]+"${docker_lines[@]}"}; do
        case " ${docker_daemon_files[*]-} " in
        *" ${docker_line%% *} "*) docker_daemon_key+=${docker_daemon_key:+$'\n'}$docker_line ;;
        *) docker_cli_key+=${docker_cli_key:+$'\n'}$docker_line ;;
        esac
    done
fi

if [ ${#docker_cli_files[@]} -gt 0 ]; then
    # (dockerd's answers, which docker_root_facts reads, were asked first:
    # containers/dockerd-early.sh.)
    # `docker --version` and `docker compose version` depend on nothing but
    # the CLI's binary and the compose plugin it finds (the user's plugin
    # directory or config first, then the system's), and each start costs
    # 50 to 200 ms: kept in the user's cache, keyed by those files' inode,
    # size and mtime (a package upgrade replaces them).
    if facts_cache_get "$facts_user_cache/docker-versions" "v1 $docker_cli_key"; then
        docker_version=${facts_cached%%$'\n'*}
        docker_compose=${facts_cached#*$'\n'}
    else
        docker_version=$(docker --version 2>/dev/null || true)
        docker_compose=$(docker compose version 2>/dev/null || true)
        [ -z "$docker_version" ] || facts_cache_put "$facts_user_cache/docker-versions" "v1 $docker_cli_key" "$docker_version"$'\n'"$docker_compose"
    fi
    kv docker.version "$docker_version"
    kv docker.compose "$docker_compose"
    # As the user, without sudo: works only once the group applies to this
    # session (root's answer comes from docker_root_facts). With Docker's
    # socket, the question is whether this session may write it (access(2),
    # as connect(2) checks it; no fork), and docker_root_facts says yes
    # only if the daemon answers too. Without it (the chroot test hosts'
    # stand-in), the CLI: `docker info` exits 0 even when the daemon refuses
    # it (Docker 23 and later print the error on stderr), so the answer is
    # the server version it printed. A daemon that is restarting must not
    # hang the facts: a time limit.
    if [ "$EUID" -ne 0 ]; then
        if [ -S "${docker_api_socket:-/var/run/docker.sock}" ]; then
            # shellcheck disable=SC2034 # read by docker_root_facts
            if [ -w "${docker_api_socket:-/var/run/docker.sock}" ]; then docker_user_socket=yes; else docker_user_socket=no; fi
        elif [ -n "$(timeout 20 docker info --format '{{.ServerVersion}}' 2>/dev/null || true)" ]; then
            kv docker.user_access yes
        else
            kv docker.user_access no
        fi
    fi
fi
# The service's state, as `systemctl is-enabled` and `is-active` word it,
# from the facts' one `systemctl show` (the prelude's facts_units), read
# after root's part, beside which it runs.
if command -v systemctl >/dev/null 2>&1; then
    facts_units+=(docker.service)
    docker_unit_answer() {
        facts_units_read
        kv docker.enabled "${facts_unit_enabled[docker.service]:-}"
        kv docker.active "${facts_unit_active[docker.service]:-}"
    }
    facts_after_root+=(docker_unit_answer)
fi
# The layer downloads the daemon runs at once per pull, and the Docker Hub
# mirrors it asks first, as daemon.json sets them (empty: unset, no file,
# or no jq yet to read it). jq takes 30 to 70 ms to start: the answers are
# kept, keyed by the file's (and jq's) stat.
if [ ${#docker_daemon_files[@]} -gt 0 ]; then
    if ! facts_cache_get "$facts_user_cache/docker-daemon-json" "v2 $docker_daemon_key"; then
        facts_cached=$(jq -r '(."max-concurrent-downloads" // "" | tostring) + "\t" + (."registry-mirrors" // [] | join(" "))' \
            /etc/docker/daemon.json 2>/dev/null) &&
            facts_cache_put "$facts_user_cache/docker-daemon-json" "v2 $docker_daemon_key" "$facts_cached"
    fi
    kv docker.max_concurrent_downloads "${facts_cached%%$'\t'*}"
    case $facts_cached in
    *$'\t'*) kv docker.registry_mirrors "${facts_cached#*$'\t'}" ;;
    *) kv docker.registry_mirrors "" ;;
    esac
fi
# The group's line from /etc/group, read in bash; getent (a fork) only when
# it is not there (a group NSS gives, or none yet).
docker_group=''
if facts_read /etc/group && [[ $'\n'$facts_file == *$'\n'docker:* ]]; then
    docker_group=$'\n'$facts_file
    docker_group=${docker_group#*$'\n'docker:}
    docker_group=docker:${docker_group%%$'\n'*}
else
    docker_group=$(exec getent group docker) || true
fi
IFS=: read -r _ _ gid members <<<"$docker_group" || true
kv docker.gid "${gid:-}"
kv docker.group "${members:-}"

# As root: the daemon's runtimes (the nvidia step looks for its own there),
# from dockerd's socket (docker-api.sh, earlier in the facts command) or, without
# it, the CLI.
root_facts_env+=(docker_user_socket)
docker_root_facts() {
    command -v docker >/dev/null 2>&1 || return 0
    local runtimes='' answered=no
    if docker_api_ask; then
        if [ "$docker_api_answered" = yes ] && docker_api_runtimes; then
            runtimes=$docker_api_runtimes_json
        fi
        [ "$docker_api_answered" = no ] || answered=yes
    else
        # As above: judged by what it printed ("null" when the daemon refused).
        runtimes=$(timeout 20 docker info --format '{{json .Runtimes}}' 2>/dev/null || true)
        [ "$runtimes" != null ] || runtimes=''
        [ -z "$runtimes" ] || answered=yes
    fi
    kv docker.runtimes "$runtimes"
    # Root's Docker Hub login, as docker login records it: the user, and a
    # fingerprint of the credential (sha256 of a fixed prefix and the
    # record), which the docker step compares with dockerhub.env's so that
    # a changed token logs in again; neither the token nor the record is
    # shown.
    # root's home as getent would give it (bash asks getpwnam, no fork).
    local config=~root/.docker/config.json auth=
    if [ -r "$config" ] && command -v jq >/dev/null 2>&1; then
        auth=$(jq -r '.auths["https://index.docker.io/v1/"].auth // empty' "$config" 2>/dev/null || true)
    fi
    if [ -n "$auth" ]; then
        kv docker.hub_user "$(base64 -d <<<"$auth" 2>/dev/null | cut -d: -f1 || true)"
        kv docker.hub_fingerprint "$(printf 'image-provision dockerhub:%s' "$auth" | sha256sum | cut -d' ' -f1)"
    fi
    if [ "${ROOT_FACTS_VIA:-}" != sudo ]; then
        # Running as root itself: root's own access is the same answer.
        kv docker.user_access "$answered"
    elif [ -n "${docker_user_socket:-}" ]; then
        # The user may write the socket, and the daemon behind it answers.
        if [ "$answered" = yes ] && [ "$docker_user_socket" = yes ]; then
            kv docker.user_access yes
        else
            kv docker.user_access no
        fi
    fi
}
