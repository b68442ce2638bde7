# shellcheck shell=bash
# Docker's containers and networks (playbooks/src/containers): every
# container in ONE listing, read by the traefik, stack and health steps (each
# docker or compose call costs tens of milliseconds, and the facts run before
# every step that acts). As root (Docker's socket is root's):
# containers_facts runs in run_root_facts, and leaves `containers_listed=yes`
# and the listing in `containers_listing` for the root functions after it
# when the daemon answered.

containers_facts() {
    containers_listed=no
    containers_listing=
    command -v docker >/dev/null 2>&1 || return 0
    # Fails without a daemon, and gives up after 20 s on one that does not
    # answer: then nothing is printed, and the steps see Docker not answering.
    local listing line
    # shellcheck disable=SC2034 # read by the facts functions after this one
    containers_listing=$(timeout 20 docker ps -a --format '{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Names}}\t{{.Status}}' 2>/dev/null) ||
        return 0
    listing=$containers_listing
    containers_listed=yes
    kv containers.listed yes
    kv docker.networks "$(timeout 20 docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' || true)"
    # PROJECT<TAB>WORKING_DIR<TAB>SERVICE<TAB>STATE<TAB>NAME<TAB>STATUS
    while IFS= read -r line; do
        [ -z "$line" ] || kv container "$line"
    done <<<"$listing"
}
