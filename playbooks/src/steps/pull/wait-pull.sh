#!/bin/bash
# Waits for the background pull (start-pull.sh) to end, at most TIMEOUT
# seconds. Whether it succeeded does not matter here: the stack step pulls
# again in the foreground (only what is still missing) and reports a
# failure there, with its output.
# Inputs: TIMEOUT (seconds).
set -euo pipefail
pidf=/run/image-provision/pull.pid
[ -f "$pidf" ] || exit 0
pid=$(cat "$pidf")
kill -0 "$pid" 2>/dev/null || exit 0
echo "waiting for the background pull (pid $pid)"
if ! timeout "$TIMEOUT" tail --pid="$pid" -s 0.2 -f /dev/null; then
    echo "the background pull (pid $pid) is still running after $TIMEOUT s" >&2
    exit 1
fi
