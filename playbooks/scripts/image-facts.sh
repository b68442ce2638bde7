#!/bin/bash
# Facts about the IMAGE layout, Traefik and the stack, appended to facts.sh
# in the same round trip when the IMAGE steps run: `key=value` lines.
# Everything here needs root (the layout is root's, and so is Docker's
# socket), so it runs as one `sudo -n bash`; without root it prints nothing
# (facts.sh already says why not).
# Inputs: BASE_DIR, the IMAGE working directory; FILES, the space-separated
# paths of the files the steps write, whose sha256 and mode to report.
set -euo pipefail

image_facts() {
    kv() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n' ' ')"; }
    local base=$BASE_DIR clone=$BASE_DIR/IMAGE-server
    kv docker.gid "$(getent group docker | cut -d: -f3 || true)"

    local missing='' d l f
    for d in cache testing/warmup; do [ -d "$base/$d" ] || missing="$missing $d"; done
    kv image.dirs_missing "${missing# }"
    for l in bin config docker-compose.yml; do
        kv "image.link.$l" "$(readlink -- "$base/$l" || true)"
    done

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

    for f in ${FILES:-}; do
        if [ -f "$f" ]; then
            kv "file.$f" "$(sha256sum <"$f" | cut -d' ' -f1) $(stat -c %a "$f")"
        else
            kv "file.$f" absent
        fi
    done

    # The config/*.env files compose will read: every one named by the
    # compose files in use, and those imageup and the stack always use.
    local names
    # BEGIN compose-env-files
    names=$({
        grep -ho 'config/[A-Za-z0-9_.-]*\.env' "$base/docker-compose.yml" "$base/site-docker-compose.yml" 2>/dev/null |
            sed 's|^config/||' || true
        printf '%s\n' express-common.env maps.env llm.env apis-and-selection.env azure-api.env imageup.env
    } | sort -u)
    # END compose-env-files
    local absent='' open=''
    if [ -d "$clone/config" ]; then
        for f in $names; do
            if [ ! -f "$clone/config/$f" ]; then
                absent="$absent $f"
            elif [ "$(stat -c %a "$clone/config/$f")" != 600 ]; then
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
    docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || return 0
    kv docker.networks "$(docker network ls --format '{{.Name}}' | sort | tr '\n' ' ' || true)"
    kv traefik.running "$(docker ps --filter label=com.docker.compose.project=traefik --filter status=running --format '{{.Names}}' || true)"
    if [ -f "$base/.env" ] && [ -e "$base/docker-compose.yml" ]; then
        local compose=(docker compose --project-directory "$base" --env-file "$base/.env") id
        kv image.services "$("${compose[@]}" config --services 2>/dev/null | sort | tr '\n' ' ' || true)"
        kv image.running "$("${compose[@]}" ps --services --status running 2>/dev/null | sort | tr '\n' ' ' || true)"
        id=$("${compose[@]}" ps -q orchestrator 2>/dev/null | head -n 1 || true)
        if [ -n "$id" ]; then
            kv image.orchestrator "$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || true)"
        fi
    fi
}

if [ "$(id -u)" -eq 0 ]; then
    (cd / && image_facts)
elif command -v sudo >/dev/null 2>&1 && sudo -n -l true >/dev/null 2>&1; then
    # One sudo for all of it; sudo resets the environment, so the inputs go
    # through env.
    sudo -n env BASE_DIR="$BASE_DIR" FILES="${FILES:-}" bash -c "$(declare -f image_facts); set -euo pipefail; cd / && image_facts"
fi
