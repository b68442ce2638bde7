# shellcheck shell=bash
# The idle stop (playbooks/src/steps/upkeep), run by
# image-provision-autostop.service from its timer. A request is a line the
# IMAGE orchestrator logs for one: `Received request` (POST /render), `Running
# preprocessors in ...` (POST /render/preprocess, and /render too), or an
# access-log line of a POST to /render. Its GET /health (Docker's health
# check, the health check's) logs nothing and counts for nothing, and SSH
# logins do not count. The idle clock starts at the latest of: the timer's
# start (at boot, or when the upkeep step armed it again), the orchestrator
# container's start, the last request. Once it has run for IDLE_AFTER
# seconds, the script says so (stdout: the journal and the console, which
# EC2's system log shows; logged-in terminals) and powers the server off;
# before, it says how long it has been idle (stderr: the journal only). When
# Docker does not answer, it cannot tell, says so and fails (no power-off).
# Inputs: IDLE_AFTER (seconds), BASE_DIR (the stack's compose directory).
set -euo pipefail

after=${IDLE_AFTER:-}
case $after in
'' | *[!0-9]*)
    echo "image-provision: IDLE_AFTER ${after@Q} is not a number of seconds; not stopping" >&2
    exit 1
    ;;
esac
request='Received request|Running (pseudo-)?preprocessors in |"POST /render[/ ?"]'
now=$(date -u +%s)

# The timer's start: boot, or the upkeep step's re-arming. Unknown: boot.
armed=$(systemctl show -p ActiveEnterTimestamp --value image-provision-autostop.timer 2>/dev/null || true)
if [ -z "$armed" ] || ! since=$(date -u -d "$armed" +%s 2>/dev/null); then
    read -r up _ </proc/uptime
    since=$((now - ${up%.*}))
fi
why="the idle stop was armed"

if ! ids=$(timeout 30 docker ps -q --filter "label=com.docker.compose.project.working_dir=${BASE_DIR:-}" \
    --filter label=com.docker.compose.service=orchestrator 2>&1); then
    echo "image-provision: Docker does not answer (${ids}); cannot tell whether the server is idle, not stopping" >&2
    exit 1
fi
id=${ids%%$'\n'*}
if [ -z "$id" ]; then
    why="$why (the orchestrator is not running: no request can reach it)"
else
    started=$(timeout 30 docker inspect -f '{{.State.StartedAt}}' "$id" 2>/dev/null || true)
    if started=$(date -u -d "$started" +%s 2>/dev/null) && [ "$started" -gt "$since" ]; then
        since=$started
        why="the orchestrator started"
    fi
    if ! last=$(timeout 60 docker logs --timestamps --since "$since" "$id" 2>&1 |
        { grep -E -- "$request" || true; } | tail -n 1); then
        echo "image-provision: reading the orchestrator's log failed; cannot tell whether the server is idle, not stopping" >&2
        exit 1
    fi
    if [ -n "$last" ] && at=$(date -u -d "${last%% *}" +%s 2>/dev/null) && [ "$at" -ge "$since" ]; then
        since=$at
        why="the last request"
    fi
fi

idle=$((now - since))
if [ "$idle" -lt "$after" ]; then
    # To the journal only (stderr): the console gets the power-off alone.
    echo >&2 "image-provision: idle for ${idle}s, since $why at $(date -u -d "@$since" +%Y-%m-%dT%H:%M:%SZ); the server powers off after ${after}s without a request"
    exit 0
fi
message="image-provision: no request has reached the orchestrator for ${idle}s (since $why; autostop after ${after}s); powering the server off now"
echo "$message"
if command -v wall >/dev/null; then
    wall "$message" 2>/dev/null || true
fi
systemctl --no-block poweroff
