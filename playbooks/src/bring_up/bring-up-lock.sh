# shellcheck shell=bash
# A library, not a script: one bring-up of the stack at a time, and what to
# say when warmup does not finish. Put in front of run-imageup.sh's users
# and of the upkeep step's stack-at-boot.sh.

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

