# shellcheck shell=bash
# The ready step's facts (playbooks/src/steps/ready): is cloud-init done, and
# does anyone hold the dpkg/apt locks? Runs as the SSH user.

# cloud-init's state without waiting ("done", "running", "disabled", ...).
if command -v cloud-init >/dev/null 2>&1; then
    kv cloud_init "$(cloud-init status 2>/dev/null | sed -n 's/^status: *//p' || true)"
else
    kv cloud_init absent
fi

# The dpkg/apt locks: held when /proc/locks lists one of their inodes (apt
# takes fcntl locks, which flock(1) cannot see; fuser may not be installed).
locked=$(
    stat -c '%i %n' /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock 2>/dev/null |
        awk 'FILENAME == "/proc/locks" {
                for (i = 2; i <= NF; i++) if ($i ~ /^[0-9a-f]+:[0-9a-f]+:[0-9]+$/) { split($i, d, ":"); held[d[3]] = 1; break }
                next
            }
            $1 in held { print $2 }' /proc/locks - |
        tr '\n' ' ' || true
)
kv apt.locked "${locked% }"
