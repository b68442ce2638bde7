# shellcheck shell=bash
# The docker step's facts (playbooks/src/steps/docker): the CLI, compose v2,
# the service, daemon.json's max-concurrent-downloads and registry-mirrors,
# the docker group, whether the SSH user reaches the daemon, and (as root)
# the daemon's runtimes and root's Docker Hub login. The user's part runs as the SSH user,
# docker_root_facts as root (run_root_facts).

if command -v docker >/dev/null 2>&1; then
    kv docker.version "$(docker --version 2>/dev/null || true)"
    kv docker.compose "$(docker compose version 2>/dev/null || true)"
    # As the user, without sudo: works only once the group applies to this
    # session (root's answer comes from docker_root_facts). `docker info`
    # exits 0 even when the daemon refuses it (Docker 23 and later print the
    # error on stderr), so the answer is the server version it printed. A
    # daemon that is restarting must not hang the facts: a time limit.
    if [ "$EUID" -ne 0 ]; then
        if [ -n "$(timeout 20 docker info --format '{{.ServerVersion}}' 2>/dev/null || true)" ]; then
            kv docker.user_access yes
        else
            kv docker.user_access no
        fi
    fi
fi
if command -v systemctl >/dev/null 2>&1; then
    kv docker.enabled "$(systemctl is-enabled docker 2>/dev/null || true)"
    kv docker.active "$(systemctl is-active docker 2>/dev/null || true)"
fi
# The layer downloads the daemon runs at once per pull, and the Docker Hub
# mirrors it asks first, as daemon.json sets them (empty: unset, no file,
# or no jq yet to read it).
if [ -r /etc/docker/daemon.json ] && command -v jq >/dev/null 2>&1; then
    kv docker.max_concurrent_downloads \
        "$(jq -r '."max-concurrent-downloads" // empty' /etc/docker/daemon.json 2>/dev/null || true)"
    kv docker.registry_mirrors \
        "$(jq -r '."registry-mirrors" // [] | join(" ")' /etc/docker/daemon.json 2>/dev/null || true)"
fi
IFS=: read -r _ _ gid members < <(getent group docker || true) || true
kv docker.gid "${gid:-}"
kv docker.group "${members:-}"

# As root: the daemon's runtimes (the nvidia step looks for its own there).
docker_root_facts() {
    command -v docker >/dev/null 2>&1 || return 0
    local runtimes
    # As above: judged by what it printed ("null" when the daemon refused).
    runtimes=$(timeout 20 docker info --format '{{json .Runtimes}}' 2>/dev/null || true)
    [ "$runtimes" != null ] || runtimes=''
    kv docker.runtimes "$runtimes"
    # Root's Docker Hub login, as docker login records it: the user, and a
    # fingerprint of the credential (sha256 of a fixed prefix and the
    # record), which the docker step compares with dockerhub.env's so that
    # a changed token logs in again; neither the token nor the record is
    # shown.
    local config auth=''
    config=$(getent passwd root | cut -d: -f6)/.docker/config.json
    if [ -r "$config" ] && command -v jq >/dev/null 2>&1; then
        auth=$(jq -r '.auths["https://index.docker.io/v1/"].auth // empty' "$config" 2>/dev/null || true)
    fi
    if [ -n "$auth" ]; then
        kv docker.hub_user "$(base64 -d <<<"$auth" 2>/dev/null | cut -d: -f1 || true)"
        kv docker.hub_fingerprint "$(printf 'image-provision dockerhub:%s' "$auth" | sha256sum | cut -d' ' -f1)"
    fi
    if [ "${ROOT_FACTS_VIA:-}" != sudo ]; then
        # Running as root itself: root's own access is the same answer.
        if [ -n "$runtimes" ]; then kv docker.user_access yes; else kv docker.user_access no; fi
    fi
}
