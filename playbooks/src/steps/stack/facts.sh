# shellcheck shell=bash
# The stack step's facts (playbooks/src/steps/stack): what was deployed (the
# stamp stack-up.sh writes), the directories compose records as the stack's
# project directory (its containers are picked from the shared listing by
# them), and the services compose would run. As root: stack_facts runs in
# run_root_facts, after containers_facts.
# Inputs: BASE_DIR.

root_facts_env+=(BASE_DIR)
stack_facts() {
    local base=$BASE_DIR real_dir
    kv stack.deployed "$(cat "$base/.image-provision/deployed" 2>/dev/null || true)"
    # Docker must answer (containers_facts ran first), and the layout be there.
    [ "${containers_listed:-no}" = yes ] || return 0
    [ -f "$base/.env" ] && [ -e "$base/docker-compose.yml" ] || return 0
    # compose records BASE_DIR as the working directory (.env's COMPOSE_FILE
    # puts the first compose file there) or, should it resolve
    # docker-compose.yml's symlink, the clone itself. Either counts.
    real_dir=$(readlink -f -- "$base/docker-compose.yml" 2>/dev/null || true)
    kv stack.project_dirs "$base ${real_dir%/*}"

    # The services compose would run: `config --services` loads the whole
    # project, so its answer is kept, keyed by what it depends on (.env,
    # which holds COMPOSE_FILE and COMPOSE_PROFILES, and the compose files).
    local key f cache=/var/cache/image-provision/compose-services services=''
    key="$base $(
        for f in .env $(sed -n 's/^COMPOSE_FILE=//p' "$base/.env" | tail -n 1 | tr ':' ' '); do
            case $f in /*) ;; *) f=$base/$f ;; esac
            cat -- "$f" 2>/dev/null || echo "absent $f"
        done | sha256sum | cut -d' ' -f1
    )"
    if [ -f "$cache" ] && [ "$(head -n 1 "$cache")" = "$key" ]; then
        services=$(sed -n 2p "$cache")
    fi
    if [ -z "$services" ]; then
        services=$(timeout 60 docker compose --project-directory "$base" --env-file "$base/.env" config --services 2>/dev/null | sort | tr '\n' ' ' || true)
        if [ -n "$services" ]; then
            { mkdir -p "${cache%/*}" && printf '%s\n%s\n' "$key" "$services" >"$cache.$$" && mv -f "$cache.$$" "$cache"; } 2>/dev/null || true
        fi
    fi
    kv stack.services "$services"
}
