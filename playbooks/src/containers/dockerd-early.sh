# shellcheck shell=bash
# dockerd's answers asked first (playbooks/src/containers): root's shell
# starts the request (docker_api_start: docker-api.sh, put in front of this
# script) as soon as it is up, before any root function, and the root
# functions that do not need dockerd (the files', the layout's) run while it
# answers; docker_root_facts and containers_facts read the answers. A part
# of its own, early in the facts command, for that order. Runs as the SSH
# user.
if command -v docker >/dev/null 2>&1; then
    facts_root_early docker_api_start
fi
