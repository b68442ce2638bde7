# shellcheck shell=bash
# A library, not a script: the stack step (mod.rs beside this file) puts it
# in front of stack-up.sh (bootstrap's stack step) and of update.sh
# (`update`): both bring the stack up the same way (imageup, or
# with --no-imageup compose pull and up), under the same time limit, and
# fail with the same words.

# bring_up_lock BASE LIMIT: one bring-up of the stack at a time. A run whose
# connection dropped can leave its imageup running on the host; the next run
# (or an update) waits for it, within its own time limit, instead of tearing
# the stack down under it. The lock (fd 9) passes to imageup and compose, and
# goes when the last of them exits.
bring_up_lock() {
    mkdir -p -- "$1/.image-provision"
    exec 9>"$1/.image-provision/bring-up.lock"
    if ! flock -n 9; then
        echo "another bring-up of the stack (imageup or compose up) is running on this host; waiting up to $2 s for it" >&2
        if ! flock -w "$2" 9; then
            echo "the other bring-up still holds $1/.image-provision/bring-up.lock after $2 s" >&2
            exit 1
        fi
    fi
}

# not_healthy_on_image_network: each container on the `image` network that
# is not healthy (what warmup waits for), with its status and the last lines
# of its log.
not_healthy_on_image_network() {
    local name status
    while read -r name status; do
        [ -n "$name" ] || continue
        echo "  $name: $status"
        docker logs --tail 3 "$name" 2>&1 | sed 's/^/    /' || true
    done < <(docker ps -a --filter network=image --format '{{.Names}} {{.Status}}' 2>/dev/null | grep -v '(healthy)' || true)
}

# run_imageup BASE TIMEOUT: BASE's bin/imageup (the IMAGE team's
# scripts/imageup) under a time limit of TIMEOUT seconds: its warm-up waits
# for every warm-up service to be healthy and has no time limit of its own.
# Exits the script when imageup fails or runs out of time.
run_imageup() {
    local base=$1 limit=$2 rc=0
    bring_up_lock "$base" "$limit"
    # timeout signals its whole process group: warmup's waits go too.
    timeout --kill-after=30 "$limit" "$base/bin/imageup" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "imageup did not finish within $limit s: its warm-up waits, with no limit of its own, for every warm-up service to become healthy;" \
            "see $base/testing/warmup/. Not healthy on the image network:" >&2
        not_healthy_on_image_network >&2
        exit 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "imageup failed (exit $rc)" >&2
        exit "$rc"
    fi
}

# run_compose_up BASE TIMEOUT: without imageup (--no-imageup), compose's own
# pull under the time limit, then `up -d` (which recreates only the services
# whose image or settings changed).
run_compose_up() {
    local base=$1 limit=$2 rc=0
    bring_up_lock "$base" "$limit"
    cd -- "$base" || exit 1
    timeout "$limit" docker compose --env-file "$base/.env" pull || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "docker compose pull failed or did not finish within $limit s (exit $rc)" >&2
        exit 1
    fi
    docker compose --env-file "$base/.env" up -d
}
