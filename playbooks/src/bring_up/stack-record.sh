# shellcheck shell=bash
# A library, not a script (bring-up-lock.sh and run-imageup.sh go in front):
# what runs recorded, kept and restored, for updates that roll back. Put in
# front of update.sh and rollback.sh (`update`), the upkeep step's
# auto-update.sh (the nightly update, which rolls back the same way),
# stack-up.sh (bootstrap: a bring-up undoes a rollback, and says so) and
# stack-at-boot.sh (a rolled-back stack starts pinned).
#
# The record, root's (0700, files 0600), in STACK_RECORD_DIR:
#   before    what ran when the last update started
#   current   what runs: after a good update, or a rollback
#   previous  what ran before the last good update (`update --rollback`)
#   pin.yml   while rolled back: the compose override that pins each
#             service to its recorded image (by digest), read with .env's
#             COMPOSE_FILE by every compose this tool runs
#   history   one line a change: updated, rolled back, unpinned
# A record: "time=UTC", "commit=SHA" (the clone's HEAD), then one line a
# service: "image SERVICE IMAGE_ID REPO@sha256:DIGEST" ("-" without a
# digest: an image built on the host). The images of `before` are tagged
# image-provision/rollback:SERVICE: a pull of a newer `latest` leaves them
# no other tag, and the prune timer removes only untagged (dangling) images.

STACK_RECORD_DIR=/var/lib/image-provision/stack
STACK_KEEP_TAG="image-provision/rollback"

# stack_record_dir: the record's directory, root's alone.
stack_record_dir() {
    mkdir -p -- "$STACK_RECORD_DIR"
    chmod 0700 -- "$STACK_RECORD_DIR"
}

# stack_compose BASE ARG...: docker compose in BASE as imageup runs it
# (BASE's .env), with the pin override after .env's COMPOSE_FILE while there
# is one (the environment's COMPOSE_FILE beats .env's).
stack_compose() {
    local base=$1 files
    shift
    files=$(sed -n 's/^COMPOSE_FILE=//p' "$base/.env" | tail -n 1)
    if [ -f "$STACK_RECORD_DIR/pin.yml" ]; then
        (cd -- "$base" && COMPOSE_FILE="${files:-$base/docker-compose.yml}:$STACK_RECORD_DIR/pin.yml" \
            docker compose --env-file "$base/.env" "$@")
    else
        (cd -- "$base" && docker compose --env-file "$base/.env" "$@")
    fi
}

# stack_record BASE FILE: what runs now into FILE (see above).
stack_record() {
    local base=$1 out=$2 id service image ref repo digest
    stack_record_dir
    {
        echo "time=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit=$(git -C "$base/IMAGE-server" rev-parse HEAD 2>/dev/null || echo unknown)"
        for id in $(stack_compose "$base" ps -a -q 2>/dev/null); do
            read -r service image ref < <(docker inspect -f \
                '{{index .Config.Labels "com.docker.compose.service"}} {{.Image}} {{.Config.Image}}' "$id") || continue
            repo=${ref%@*}
            # A tag is what follows the last colon after the last slash.
            case ${repo##*/} in *:*) repo=${repo%:*} ;; esac
            digest=$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$image" 2>/dev/null |
                grep -m 1 -F "$repo@" || true)
            echo "image $service $image ${digest:--}"
        done | sort -u -k 2,2
    } >"$out.tmp"
    chmod 0600 "$out.tmp"
    mv -f -- "$out.tmp" "$out"
}

# stack_describe FILE: "commit SHORT (N images, recorded TIME)".
stack_describe() {
    local commit time n
    commit=$(sed -n 's/^commit=//p' "$1")
    time=$(sed -n 's/^time=//p' "$1")
    n=$(grep -c '^image ' "$1" || true)
    echo "commit ${commit:0:12} ($n images, recorded $time)"
}

# stack_changes FROM TO: the services whose image differs, "SERVICE
# DIGEST -> DIGEST" (digests cut short), one a line.
stack_changes() {
    awk '$1 == "image" { ref = $4; sub(/.*@sha256:/, "", ref); ref = substr(ref, 1, 12)
            if (FILENAME == ARGV[1]) { id[$2] = $3; was[$2] = ref } else if ($2 in id && id[$2] != $3) print $2, was[$2], "->", ref }' \
        "$1" "$2"
}

# stack_history LINE: LINE, time-stamped, into the history (and the output).
stack_history() {
    stack_record_dir
    echo "$1"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1" >>"$STACK_RECORD_DIR/history"
    chmod 0600 "$STACK_RECORD_DIR/history"
}

# stack_before_update BASE: before an update: what runs recorded as
# `before`, its images kept (tagged), the pin lifted (an update follows
# the branch and `latest` again).
stack_before_update() {
    local base=$1 service image
    # A record left by an earlier run must not stand for this one.
    rm -f -- "$STACK_RECORD_DIR/before"
    stack_record "$base" "$STACK_RECORD_DIR/before"
    while read -r _ service image _; do
        docker tag "$image" "$STACK_KEEP_TAG:$service"
    done < <(grep '^image ' "$STACK_RECORD_DIR/before")
    if [ -f "$STACK_RECORD_DIR/pin.yml" ]; then
        rm -f -- "$STACK_RECORD_DIR/pin.yml"
        stack_history "unpinned for the update (was pinned since a rollback)"
    fi
}

# stack_updated BASE: the update was good: `before` becomes `previous`,
# what runs `current`.
stack_updated() {
    local base=$1
    stack_record "$base" "$STACK_RECORD_DIR/current"
    cp -p -- "$STACK_RECORD_DIR/before" "$STACK_RECORD_DIR/previous"
    stack_history "updated from $(stack_describe "$STACK_RECORD_DIR/previous") to $(stack_describe "$STACK_RECORD_DIR/current")"
    stack_changes "$STACK_RECORD_DIR/previous" "$STACK_RECORD_DIR/current" | sed 's/^/  /'
}

# stack_restore BASE FILE LIMIT: the stack as FILE recorded it: the clone
# reset to its commit (imageup would move it back to the branch, so not
# imageup), compose pinned to its images (pin.yml), `up -d` (which
# recreates only what differs) and IMAGE's warmup, under the bring-up lock
# and LIMIT seconds. Exits the script on failure.
stack_restore() {
    local base=$1 file=$2 limit=$3 commit service ref files rc=0
    commit=$(sed -n 's/^commit=//p' "$file")
    bring_up_lock "$base" "$limit"
    if [ -n "$commit" ] && [ "$commit" != unknown ] &&
        [ "$(git -C "$base/IMAGE-server" rev-parse HEAD 2>/dev/null)" != "$commit" ]; then
        git -C "$base/IMAGE-server" reset --quiet --hard "$commit"
        git -C "$base/IMAGE-server" submodule --quiet update --init
    fi
    {
        echo "# Written by image-provision: the stack rolled back, each service pinned to"
        echo "# the image it ran ($(stack_describe "$file"))."
        echo "# Lifted by the next update (or a bootstrap that brings the stack up)."
        echo "services:"
        while read -r _ service _ ref; do
            [ "$ref" != - ] || ref=$STACK_KEEP_TAG:$service
            printf '  %s:\n    image: %s\n' "$service" "$ref"
        done < <(grep '^image ' "$file")
    } >"$STACK_RECORD_DIR/pin.yml.tmp"
    chmod 0600 "$STACK_RECORD_DIR/pin.yml.tmp"
    mv -f -- "$STACK_RECORD_DIR/pin.yml.tmp" "$STACK_RECORD_DIR/pin.yml"
    files=$(sed -n 's/^COMPOSE_FILE=//p' "$base/.env" | tail -n 1)
    (cd -- "$base" && COMPOSE_FILE="${files:-$base/docker-compose.yml}:$STACK_RECORD_DIR/pin.yml" \
        timeout "$limit" docker compose --env-file "$base/.env" up -d --no-build --remove-orphans) || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "docker compose up at the recorded images failed or did not finish within $limit s (exit $rc)" >&2
        exit 1
    fi
    [ -x "$base/bin/warmup" ] || return 0
    timeout --kill-after=30 "$limit" "$base/bin/warmup" >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "warmup after the rollback failed or did not finish within $limit s (exit $rc). Not healthy on the image network:" >&2
        not_healthy_on_image_network >&2
        exit 1
    fi
}

# stack_wait_healthy BASE LIMIT: every container of the stack running,
# healthy where its image checks, within LIMIT seconds; else names those
# that are not (stderr) and returns 1.
stack_wait_healthy() {
    local base=$1 deadline trouble line
    deadline=$(($(date +%s) + $2))
    while :; do
        trouble=$(stack_compose "$base" ps -a --format '{{.Service}} {{.State}} {{.Health}}' 2>/dev/null |
            awk '$2 != "running" || ($3 != "" && $3 != "healthy")' || true)
        [ -n "$trouble" ] || return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "not running or not healthy after $2 s:" >&2
            while read -r line; do echo "  $line"; done <<<"$trouble" >&2
            return 1
        fi
        sleep 2
    done
}

# stack_rollback BASE FROM LIMIT: back to the record FROM (`before`: what
# ran when the update started; `previous`: what ran before the last good
# update), as stack_restore does, and recorded: "rolled back from X to Y"
# in the history and the output, with the images that changed. From
# `previous` (by hand), what ran becomes `previous` in turn, its images
# kept: a second `update --rollback` returns. Exits 4 when nothing is
# recorded to return to.
stack_rollback() {
    local base=$1 from=$2 limit=$3 dir=$STACK_RECORD_DIR service image
    if [ ! -f "$dir/$from" ] || ! grep -q '^image ' "$dir/$from"; then
        if [ "$from" = previous ]; then
            echo "no earlier state recorded in $dir: \`update --rollback\` returns to what ran before the last good update, and none has succeeded on this host yet" >&2
        else
            echo "nothing recorded to roll back to: no container of the stack ran when the update started" >&2
        fi
        exit 4
    fi
    stack_record "$base" "$dir/rolled-back-from"
    cp -p -- "$dir/$from" "$dir/rolling-back-to"
    stack_restore "$base" "$dir/rolling-back-to" "$limit"
    stack_history "rolled back from $(stack_describe "$dir/rolled-back-from") to $(stack_describe "$dir/rolling-back-to")"
    stack_changes "$dir/rolled-back-from" "$dir/rolling-back-to" | sed 's/^/  /'
    if [ "$from" = previous ]; then
        cp -p -- "$dir/rolled-back-from" "$dir/previous"
        while read -r _ service image _; do
            docker tag "$image" "$STACK_KEEP_TAG:$service"
        done < <(grep '^image ' "$dir/previous")
    fi
    mv -f -- "$dir/rolling-back-to" "$dir/current"
    rm -f -- "$dir/rolled-back-from"
}
