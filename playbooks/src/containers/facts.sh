# shellcheck shell=bash
# Docker's containers and networks (playbooks/src/containers): every
# container in ONE listing, read by the traefik, stack and health steps (each
# docker or compose call costs tens of milliseconds, and the facts run before
# every step that acts). Needs docker-api.sh (put in front of
# dockerd-early.sh, which comes first). As root (Docker's socket is root's):
# containers_facts runs in root's shell (facts_root_send), and leaves `containers_listed=yes`
# and the listing in `containers_listing` for the root functions after it
# when the daemon answered.

containers_facts() {
    containers_listed=no
    containers_listing=
    command -v docker >/dev/null 2>&1 || return 0
    local listing line networks
    # dockerd's answers through its socket (docker-api.sh: docker_root_facts
    # asked already), read in bash; else (no socket, no curl, an answer in
    # another shape) the CLI. Either fails without a daemon, and gives up
    # after 20 s on one that does not answer: then nothing is printed, and
    # the steps see Docker not answering.
    if docker_api_ask && [ "$docker_api_answered" = yes ] && docker_api_listing && docker_api_network_names; then
        listing=$docker_api_listed
        networks=$docker_api_networks_listed
    elif [ "${docker_api_answered:-}" = no ]; then
        return 0
    else
        listing=$(timeout 20 docker ps -a --format '{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Names}}\t{{.Status}}' 2>/dev/null) ||
            return 0
        networks=$(timeout 20 docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' || true)
    fi
    # shellcheck disable=SC2034 # read by the facts functions after this one
    containers_listing=$listing
    containers_listed=yes
    kv containers.listed yes
    kv docker.networks "$networks"
    # PROJECT<TAB>WORKING_DIR<TAB>SERVICE<TAB>STATE<TAB>NAME<TAB>STATUS
    local -a lines
    facts_split lines "$listing" $'\n'
    for line in ${lines[@]+"${lines[@]}"}; do
        kv container "$line"
    done
}
