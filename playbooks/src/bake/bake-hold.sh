# shellcheck shell=bash
# `ami bake`'s host side (playbooks/src/bake), as root, stack-record.sh in
# front. ACTION:
#   facts    what the image will hold: repo.commit, driver.branch, one
#            `digest SERVICE sha256:...` line a service (kv lines), and
#            held.record (a hold not yet put back: yes/no)
#   hold     move what must not be shared off the disk, into
#            /run/image-provision/bake-hold (tmpfs: never on the EBS volume,
#            so never in a snapshot), having first written the record of what
#            it moves (names only) to the disk; then sync
#   restore  put back what the record names, from the hold; say what the hold
#            no longer has (a reboot in between empties /run)
# Inputs: BASE_DIR, LOGIN_USER, LLM_DIR, WEBUI_DIR (the web UI's env files:
# its admin's login, its session key, the LLM's key); HOLD_LIMIT (hold:
# seconds after which the host puts everything back by itself).
#
# What must not be shared: the SSH host keys; the login user's and root's
# authorized_keys (the key the tool imported, and any other); the stack's
# credentials (BASE_DIR/config/*.env, the local LLM's key, the repository's
# git-credentials, and the facts' cache of the written files' hashes);
# logs (/var/log, the journal, the pull log, BASE_DIR/logs,
# the containers' logs); cloud-init's
# per-instance state (/var/lib/cloud); /etc/machine-id (emptied: systemd
# makes a new one at the first boot of an instance of the image).
#
# A cut between hold and restore (the tool killed, the connection lost)
# leaves the hold in /run and the record on disk, and the SSH host keys off
# the disk, so that no new SSH connection is possible (sshd reads them for
# each): hold therefore starts a watchdog that puts everything back by
# itself after HOLD_LIMIT seconds (longer than the tool waits for the
# image's snapshots), and the next `ami bake` (hold restores first) or
# `ami bake --restore` finds nothing left to do, or puts back. A reboot in
# between empties /run: restore then names what is lost. cloud-init, its
# per-instance state held away, then takes the boot for an instance's first
# and installs the host key from the user data and the key pair's public
# key again; the env files are the operator's to give again (`ec2 create
# NAME --env-file ...`). The record names the host it was written on (its
# instance id, else its machine id's hash): one found on another host came
# with the image it was baked into, and is removed.
set -euo pipefail

HOLD=/run/image-provision/bake-hold
RECORD_DIR=/var/lib/image-provision/bake
RECORD=$RECORD_DIR/held
WATCHDOG=/run/image-provision/bake-watchdog

# host_identity: this host's instance id (cloud-init's record, else the
# metadata's), else a hash of its machine id, else of the held machine id.
host_identity() {
    local id=""
    if [ -s /var/lib/cloud/data/instance-id ]; then
        id=$(cat /var/lib/cloud/data/instance-id)
    elif [ -s "$HOLD/files/var/lib/cloud/data/instance-id" ]; then
        id=$(cat "$HOLD/files/var/lib/cloud/data/instance-id")
    fi
    case $id in
        i-*) echo "instance $id"; return ;;
    esac
    if [ -s /etc/machine-id ]; then
        echo "machine $(sha256sum </etc/machine-id | cut -c1-64)"
    elif [ -s "$HOLD/machine-id" ]; then
        echo "machine $(sha256sum <"$HOLD/machine-id" | cut -c1-64)"
    else
        echo "unknown"
    fi
}

# to_hold: the paths that must leave the disk, one a line, those that exist.
to_hold() {
    local f home
    for f in /etc/ssh/ssh_host_*key /etc/ssh/ssh_host_*key.pub; do
        [ -e "$f" ] && echo "$f"
    done
    for home in /root "$(getent passwd "$LOGIN_USER" | cut -d: -f6)"; do
        [ -n "$home" ] && [ -f "$home/.ssh/authorized_keys" ] && echo "$home/.ssh/authorized_keys"
    done
    # The facts' cache of the written files' hashes goes with the files.
    for f in "$BASE_DIR"/config/*.env "$LLM_DIR"/.env "$LLM_DIR"/*.env ${WEBUI_DIR:+$WEBUI_DIR/*.env} \
        /etc/image-provision/git-credentials "$BASE_DIR"/.image-provision/*.log /var/cache/image-provision/files; do
        [ -f "$f" ] && echo "$f"
    done
    # Logs: regular files under /var/log (rotated ones too) and the journal,
    # the stack's own (healthcheck's, in BASE_DIR/logs), and the containers'
    # (Docker's json-file logs: what the services printed, requests included).
    local dir
    for dir in /var/log "$BASE_DIR/logs"; do
        [ -d "$dir" ] && find "$dir" -xdev -type f 2>/dev/null | sort
    done
    for f in /var/lib/docker/containers/*/*-json.log*; do
        [ -f "$f" ] && echo "$f"
    done
    [ -d /var/lib/cloud ] && echo /var/lib/cloud
    return 0
}

facts() {
    local branch
    kv repo.commit "$(git -C "$BASE_DIR/IMAGE-server" rev-parse HEAD 2>/dev/null || echo unknown)"
    # dpkg-query fails when no package matches: no driver. Bootstrap holds
    # the driver it installs (selection `hold`).
    branch=$( (dpkg-query -W -f '${Package} ${Status}\n' 'nvidia-driver-*' 2>/dev/null || true) |
        sed -n 's/^nvidia-driver-\([0-9][0-9a-z-]*\) \(install\|hold\) ok installed$/\1/p' | head -n 1)
    kv driver.branch "${branch:-none}"
    if [ -f "$BASE_DIR/.env" ]; then
        local tmp
        tmp=$(mktemp)
        stack_record "$BASE_DIR" "$tmp"
        # "image SERVICE IMAGE_ID REPO@sha256:DIGEST" -> "digest SERVICE sha256:DIGEST"
        sed -n 's/^image \([^ ]*\) [^ ]* [^ ]*@\(sha256:[0-9a-f]*\)$/digest \1 \2/p' "$tmp"
        rm -f -- "$tmp"
    fi
    if [ -f "$RECORD" ]; then kv held.record yes; else kv held.record no; fi
}

hold() {
    local path size avail
    if [ -f "$RECORD" ]; then
        restore
    fi
    mapfile -t paths < <(to_hold)
    # The hold lives in /run (RAM): refuse before anything moves when it
    # would not fit with room to spare.
    size=$( (du -sck -- "${paths[@]}" /etc/machine-id 2>/dev/null || true) | tail -n 1 | cut -f1)
    avail=$(df -Pk /run | awk 'NR == 2 { print $4 }')
    if [ "$((size * 2))" -gt "$avail" ]; then
        echo "what must be held aside (${size} KiB: logs mostly) does not fit twice in /run (${avail} KiB free);" \
            "shrink the journal first (journalctl --vacuum-size=100M)" >&2
        exit 3
    fi
    # The journal's buffers on disk first, so the held copy is whole.
    journalctl --sync >/dev/null 2>&1 || true
    mkdir -p -- "$RECORD_DIR" "$HOLD/files"
    chmod 0700 -- "$RECORD_DIR" /run/image-provision "$HOLD"
    {
        echo "host=$(host_identity)"
        echo "time=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf 'file %s\n' "${paths[@]}"
    } >"$RECORD.tmp"
    chmod 0600 -- "$RECORD.tmp"
    mv -f -- "$RECORD.tmp" "$RECORD"
    sync -- "$RECORD"
    cp -a /etc/machine-id "$HOLD/machine-id"
    for path in "${paths[@]}"; do
        mkdir -p -- "$HOLD/files$(dirname -- "$path")"
        mv -f -- "$path" "$HOLD/files$path"
    done
    # Emptied, not removed: systemd gives an instance of the image a new one
    # at its first boot (an empty file is its mark of a first boot).
    : >/etc/machine-id
    if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
        cp -a /var/lib/dbus/machine-id "$HOLD/dbus-machine-id"
        : >/var/lib/dbus/machine-id
    fi
    sync
    start_watchdog
    kv held.count "${#paths[@]}"
    kv held.kib "$size"
}

# start_watchdog: restore by itself after HOLD_LIMIT seconds, in a session
# of its own (it outlives this SSH session). The restore it runs is this
# script's, written out: this script came on stdin.
start_watchdog() {
    {
        echo 'set -euo pipefail'
        declare -p HOLD RECORD_DIR RECORD WATCHDOG
        declare -f kv host_identity restore stop_watchdog
        echo 'IN_WATCHDOG=1 restore'
    } >"$WATCHDOG.sh"
    chmod 0700 -- "$WATCHDOG.sh"
    # shellcheck disable=SC2016 # expanded by the watchdog's own bash
    setsid bash -c 'sleep "$1"; exec bash "$2"' watchdog "${HOLD_LIMIT:-900}" "$WATCHDOG.sh" \
        </dev/null >/dev/null 2>&1 &
    echo "$!" >"$WATCHDOG.pid"
    kv held.watchdog_seconds "${HOLD_LIMIT:-900}"
}

# stop_watchdog: the watchdog is not needed once restored (from the
# watchdog itself, only its files go).
stop_watchdog() {
    if [ -z "${IN_WATCHDOG:-}" ] && [ -f "$WATCHDOG.pid" ]; then
        kill "$(cat "$WATCHDOG.pid")" 2>/dev/null || true
    fi
    rm -f -- "$WATCHDOG.pid" "$WATCHDOG.sh"
}

restore() {
    local line path lost=0 back=0 recorded
    stop_watchdog
    if [ ! -f "$RECORD" ]; then
        kv restore.state nothing-held
        return 0
    fi
    recorded=$(sed -n 's/^host=//p' "$RECORD")
    if [ ! -d "$HOLD" ] && [ "$recorded" != "$(host_identity)" ]; then
        # Baked into the image this host was made from: nothing of its own.
        rm -f -- "$RECORD"
        kv restore.state foreign-record-removed
        return 0
    fi
    if [ -s "$HOLD/machine-id" ]; then
        cat "$HOLD/machine-id" >/etc/machine-id
        back=$((back + 1))
    fi
    if [ -s "$HOLD/dbus-machine-id" ]; then
        cat "$HOLD/dbus-machine-id" >/var/lib/dbus/machine-id
    fi
    while IFS= read -r line; do
        path=${line#file }
        [ "$path" != "$line" ] || continue
        if [ -e "$HOLD/files$path" ] || [ -L "$HOLD/files$path" ]; then
            mkdir -p -- "$(dirname -- "$path")"
            # A path made again meanwhile (a log reopened) gives way to the
            # held one; a directory is merged back into what is there.
            if [ -d "$HOLD/files$path" ] && [ -d "$path" ]; then
                cp -a -- "$HOLD/files$path/." "$path/"
                rm -rf -- "${HOLD:?}/files$path"
            else
                rm -rf -- "$path"
                mv -f -- "$HOLD/files$path" "$path"
            fi
            back=$((back + 1))
        elif [ ! -e "$path" ]; then
            kv restore.lost "$path"
            lost=$((lost + 1))
        fi
    done <"$RECORD"
    sync
    rm -f -- "$RECORD"
    rm -rf -- "$HOLD"
    # journald and rsyslog still write to the files moved away (now gone):
    # they open the ones put back. What they wrote in between is lost.
    journalctl --rotate >/dev/null 2>&1 || true
    systemctl kill --signal=HUP rsyslog.service >/dev/null 2>&1 || true
    kv restore.back "$back"
    kv restore.lost_count "$lost"
    kv restore.state restored
}

kv() { printf '%s=%s\n' "$1" "${2//$'\n'/ }"; }

case ${ACTION:-} in
    facts) facts ;;
    hold) hold ;;
    restore) restore ;;
    *)
        echo "ACTION must be facts, hold or restore" >&2
        exit 2
        ;;
esac
