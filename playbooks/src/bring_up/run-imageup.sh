# shellcheck shell=bash
# A library, not a script (bring-up-lock.sh goes in front of it): put in
# front of stack-up.sh (bootstrap's stack step), update.sh (`update`) and the
# upkeep step's auto-update.sh (run by a systemd timer on the host): all
# bring the stack up the same way (imageup, or with --no-imageup compose
# pull and up), one at a time, under a time limit, and fail with the same
# words.

# run_imageup BASE TIMEOUT [ARG...]: BASE's bin/imageup (the IMAGE team's
# scripts/imageup) with ARGs under a time limit of TIMEOUT seconds: its
# warm-up waits for every warm-up service to be healthy and has no time
# limit of its own. Exits the script when imageup fails or runs out of time.
run_imageup() {
    local base=$1 limit=$2 rc=0
    shift 2
    bring_up_lock "$base" "$limit"
    # timeout signals its whole process group: warmup's waits go too.
    timeout --kill-after=30 "$limit" "$base/bin/imageup" "$@" || rc=$?
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
# whose image or settings changed), then BASE's bin/warmup (IMAGE's
# scripts/warmup, which imageup ends with) under the time limit too: what
# sends a request next (the health step's probe, verify, the health timer)
# must not meet a cold model, whose first answer can outlast the
# orchestrator's PREPROCESSOR_TIMEOUT and fail its priority group.
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
    [ -x "$base/bin/warmup" ] || return 0
    timeout --kill-after=30 "$limit" "$base/bin/warmup" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "warmup did not finish within $limit s: it waits, with no limit of its own, for every warm-up service to become healthy;" \
            "see $base/testing/warmup/. Not healthy on the image network:" >&2
        not_healthy_on_image_network >&2
        exit 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "warmup failed (exit $rc); see $base/testing/warmup/" >&2
        exit 1
    fi
}
