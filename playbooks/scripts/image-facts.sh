#!/bin/bash
# Facts about the IMAGE layout, Traefik and the stack, appended to facts.sh
# in the same round trip when the IMAGE steps run: `key=value` lines.
# Everything here needs root (the layout is root's, and so is Docker's
# socket): facts.sh's run_root_facts runs image_facts as root, in the same
# sudo as its own root facts; without root it prints nothing (facts.sh
# says why not).
# Inputs: BASE_DIR, the IMAGE working directory; FILES, the space-separated
# paths of the files the steps write, whose sha256 and mode to report;
# HEALTH_URL (optional), the stack's health URL (https://NAME/PATH) through
# the host's own Traefik, at HTTPS_ADDR (optional; 127.0.0.1 when empty): NAME
# is resolved to it (curl --resolve), not by DNS.
set -euo pipefail

# image_facts runs as root in a shell of its own (facts.sh's run_root_facts):
# the functions it calls go there with it.
root_facts_helpers+=(compose_env_files)
image_facts() {
    # Few forks, as in facts.sh (whose kv this uses): this runs on every re-run.
    local base=$BASE_DIR clone=$BASE_DIR/IMAGE-server gid=''
    IFS=: read -r _ _ gid _ < <(getent group docker || true) || true
    kv docker.gid "$gid"

    local missing='' d l f
    for d in cache testing/warmup; do [ -d "$base/$d" ] || missing="$missing $d"; done
    kv image.dirs_missing "${missing# }"
    local -A link=()
    while IFS=/ read -r l f; do link[$l]=$f; done < <(
        find "$base" -mindepth 1 -maxdepth 1 -type l \( -name bin -o -name config -o -name docker-compose.yml \) -printf '%f/%l\n' 2>/dev/null || true
    )
    for l in bin config docker-compose.yml; do kv "image.link.$l" "${link[$l]:-}"; done

    if command -v git >/dev/null 2>&1; then
        # root's global config: imageup runs as root and updates the submodule too.
        kv image.git_rewrite "$(HOME=/root git config --global --get-all url.https://github.com/.insteadof || true)"
    fi
    if [ -d "$clone/.git" ]; then
        kv image.clone yes
        kv image.origin "$(git -C "$clone" config --get remote.origin.url || true)"
        if [ -e "$clone/schemas/.git" ]; then kv image.submodule yes; else kv image.submodule no; fi
    else
        kv image.clone no
    fi

    local present=() sum m
    local -A mode=()
    for f in ${FILES:-}; do
        if [ -f "$f" ]; then present+=("$f"); else kv "file.$f" absent; fi
    done
    if [ ${#present[@]} -gt 0 ]; then
        while read -r m f; do mode[$f]=$m; done < <(stat -c '%a %n' -- "${present[@]}")
        while read -r sum f; do kv "file.$f" "$sum ${mode[$f]:-}"; done < <(sha256sum -- "${present[@]}")
    fi

    # The config/*.env files compose will read (compose_env_files:
    # scripts/lib/compose-env-files.sh, which playbooks/src/image.rs puts in
    # front of this script; env-files.sh uses it too).
    local names
    names=$(compose_env_files "$base")
    local absent='' open=''
    local -A env_mode=()
    if [ -d "$clone/config" ]; then
        # shellcheck disable=SC2086 # one name per word
        while read -r m f; do env_mode[$f]=$m; done < <(cd "$clone/config" 2>/dev/null && { stat -L -c '%a %n' -- $names 2>/dev/null || true; })
        for f in $names; do
            if [ ! -f "$clone/config/$f" ]; then
                absent="$absent $f"
            elif [ "${env_mode[$f]:-}" != 600 ]; then
                open="$open $f"
            fi
        done
    fi
    kv image.env_absent "${absent# }"
    kv image.env_open "${open# }"

    # The background pull (start-pull.sh): its pid lives in /run (gone after
    # a reboot, like the pull itself), its result beside the layout.
    local pidf=/run/image-provision/pull.pid
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        kv image.pull running
    elif [ -f "$base/.image-provision/pull.done" ]; then
        kv image.pull "done $(cat "$base/.image-provision/pull.done")"
    else
        kv image.pull none
    fi
    kv image.deployed "$(cat "$base/.image-provision/deployed" 2>/dev/null || true)"

    command -v docker >/dev/null 2>&1 || return 0
    # Every container in one listing (each docker or compose call costs tens
    # of milliseconds, compose's more, as it loads the project): Traefik's
    # project, and the stack's containers by compose's working-directory label
    # (compose sets it to the project directory: BASE_DIR, as .env's
    # COMPOSE_FILE puts the first compose file there). Fails without a daemon,
    # and gives up after 20 s on one that does not answer (each call here has
    # a time limit: facts run before every step and on every verify).
    local containers
    containers=$(timeout 20 docker ps -a --format '{{.Label "com.docker.compose.project"}}\t{{.Label "com.docker.compose.project.working_dir"}}\t{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Names}}\t{{.Status}}' 2>/dev/null) ||
        return 0
    kv docker.networks "$(timeout 20 docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' || true)"
    # The stack's project directory as compose records it: BASE_DIR, or, if
    # compose resolves docker-compose.yml's symlink into the clone, the
    # clone itself. Either counts.
    local real_dir
    real_dir=$(readlink -f -- "$base/docker-compose.yml" 2>/dev/null || true)
    real_dir=${real_dir%/*}
    kv traefik.running "$(awk -F '\t' '$1 == "traefik" && $4 == "running" { print $5 }' <<<"$containers" | sort | tr '\n' ' ')"
    [ -f "$base/.env" ] && [ -e "$base/docker-compose.yml" ] || return 0
    # The stack's own containers, picked once from the listing.
    local stack orchestrator
    stack=$(awk -F '\t' -v dir="$base" -v real="$real_dir" '$2 == dir || (real != "" && $2 == real)' <<<"$containers")
    kv image.running "$(awk -F '\t' '$4 == "running" { print $3 }' <<<"$stack" | sort -u | tr '\n' ' ')"
    # The orchestrator: its healthcheck's verdict while it runs, else its state.
    orchestrator=$(awk -F '\t' '$3 == "orchestrator" {
        s = $4
        if (s == "running") {
            if ($6 ~ /\(healthy\)/) s = "healthy"; else if ($6 ~ /\(unhealthy\)/) s = "unhealthy"; else if ($6 ~ /\(health: starting\)/) s = "starting"
        }
        print s; exit
    }' <<<"$stack")
    kv image.orchestrator "$orchestrator"
    # With a domain, its health URL through this host's Traefik (the name
    # resolved to HTTPS_ADDR, so this proves Traefik's route and certificate,
    # not public DNS or firewalls), once the orchestrator is healthy (before
    # that it cannot answer, and a converged re-run then needs no round trip
    # of its own for the health step).
    if [ -n "${HEALTH_URL:-}" ] && [ "$orchestrator" = healthy ]; then
        local name=${HEALTH_URL#*://}
        name=${name%%/*}
        if curl -fsS --max-time 5 -o /dev/null --resolve "$name:443:${HTTPS_ADDR:-127.0.0.1}" "$HEALTH_URL" 2>/dev/null; then kv image.https_health ok; else kv image.https_health failed; fi
    fi

    # The services compose would run: `config --services` loads the whole
    # project, so its answer is kept, keyed by what it depends on (.env,
    # which holds COMPOSE_FILE and COMPOSE_PROFILES, and the compose files).
    local key cache=/var/cache/image-provision/compose-services services=''
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
    kv image.services "$services"
}

