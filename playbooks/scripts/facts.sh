#!/bin/bash
# Facts about the host, gathered in one round trip: one `key=value` per line
# (values are single lines). Runs as the SSH user. What needs root lives in
# functions that run_root_facts, the script's last line (added by
# playbooks/src/facts.rs after any further facts scripts), runs in a single
# `sudo -n`: each sudo costs tens of milliseconds (PAM, logging).
# Inputs: PACKAGES, the space-separated package names whose state to report;
# DEBIAN_COMPONENTS, the components Debian's archive entries should carry.
set -euo pipefail

# Forks cost a millisecond or two each and this runs on every re-run: kv and
# the reads below stay inside bash where they can.
kv() { printf '%s=%s\n' "$1" "${2//$'\n'/ }"; }

# A subshell: sourcing os-release must not clobber our variables.
(
    # shellcheck source=/dev/null # the host's file, not ours to follow
    . /etc/os-release
    kv os.id "${ID:-}"
    kv os.version "${VERSION_ID:-}"
    kv os.codename "${VERSION_CODENAME:-}"
    kv os.pretty "${PRETTY_NAME:-}"
)
kv arch "$(dpkg --print-architecture 2>/dev/null || uname -m)"
kv user "$(id -un)"
kv groups.session "$(id -nG)"
read -r boot_id </proc/sys/kernel/random/boot_id
kv boot_id "$boot_id"

# run_root_facts FUNCTION...: the functions, as root, with kv, the functions
# in root_facts_helpers and the inputs they read; reports how the user gets
# root as `sudo` (root, nopasswd, password or missing). sudo resets the
# environment, so the inputs go through env; none of them is a secret.
# A facts script whose root functions call functions of their own adds
# those to root_facts_helpers.
root_facts_helpers=(kv)
run_root_facts() {
    local out
    if [ "$EUID" -eq 0 ]; then
        kv sudo root
        (cd / && for f in "$@"; do "$f"; done)
    elif ! command -v sudo >/dev/null 2>&1; then
        kv sudo missing
    # The functions go to root's bash on stdin, not on its command line,
    # which sudo logs in full. In braces, so bash reads all of it before
    # running any (a command reading stdin cannot eat the rest). The first
    # line, printed as root, says sudo let us in: a function that fails
    # after it is not a refused sudo.
    elif out=$(
        {
            echo '{'
            declare -f "${root_facts_helpers[@]}" "$@"
            printf 'set -euo pipefail\nkv sudo nopasswd\ncd /\n'
            printf '%q\n' "$@"
            echo '}'
        } | sudo -n env ROOT_FACTS_VIA=sudo BASE_DIR="${BASE_DIR:-}" FILES="${FILES:-}" HEALTH_URL="${HEALTH_URL:-}" HTTPS_ADDR="${HTTPS_ADDR:-}" bash -s 2>/dev/null
    ) || [[ $out == sudo=nopasswd* ]]; then
        printf '%s\n' "$out"
    else
        kv sudo password
    fi
}

# A GPU: lspci (pciutils) when installed, else the same answer from sysfs.
gpu=''
if command -v lspci >/dev/null 2>&1; then
    gpu=$(lspci -nn | grep -E '\[03(00|02)\].*\[10de:' | head -n 1 || true)
else
    for dev in /sys/bus/pci/devices/*; do
        [ -r "$dev/vendor" ] || continue
        if [ "$(cat "$dev/vendor")" = 0x10de ] && [[ "$(cat "$dev/class")" == 0x030[02]* ]]; then
            gpu="${dev##*/} NVIDIA [10de:$(sed 's/^0x//' "$dev/device")]"
            break
        fi
    done
fi
kv gpu "$gpu"

# Installed packages among those asked about: pkg.NAME=VERSION.
if [ -n "${PACKAGES:-}" ]; then
    # shellcheck disable=SC2086 # PACKAGES is a list of words on purpose
    dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n' $PACKAGES 2>/dev/null |
        while IFS=$'\t' read -r name status version; do
            case $status in ii*) kv "pkg.$name" "$version" ;; esac
        done || true
fi

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

# dpkg interrupted (a cut connection kills dpkg mid-install): packages left
# unpacked or half-configured, or journal entries dpkg has not applied. apt
# refuses to install anything until `dpkg --configure -a` has run.
if [ -n "$(find /var/lib/dpkg/updates -mindepth 1 -print -quit 2>/dev/null)" ] ||
    [ -n "$(dpkg --audit 2>/dev/null || true)" ]; then
    kv dpkg.interrupted yes
else
    kv dpkg.interrupted no
fi

# Age of the package lists: seconds since the last successful `apt-get
# update`, by the stamp it touches (ours passes apt the hook; Debian's and
# Ubuntu's periodic updates touch it too). The list files' own mtimes are
# the mirror's publish times, often days old right after an update. Empty
# without lists or stamp: the apt step then updates.
stamp=/var/lib/apt/periodic/update-success-stamp
lists=$(find /var/lib/apt/lists -maxdepth 1 -type f \( -name '*Packages*' -o -name '*Release' \) -print -quit 2>/dev/null || true)
updated=$(stat -c %Y "$stamp" 2>/dev/null || true)
if [ -n "$lists" ] && [ -n "$updated" ]; then
    kv apt.lists_age "$(($(date +%s) - updated))"
    # What an upgrade would install depends only on dpkg's status, the lists
    # and apt's configuration, but simulating it takes a quarter of a second
    # or more: the count is kept in the user's cache, keyed by those files'
    # inode, size and mtime (dpkg and apt replace them by rename; a directory's
    # mtime moves when a file in it comes, goes or is replaced).
    cache=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/image-provision/apt-upgradable
    key=$(stat -c '%n %i %s %y' /var/lib/dpkg/status /var/lib/apt/lists /etc/apt /etc/apt/sources.list.d \
        /etc/apt/preferences.d /etc/apt/apt.conf.d /etc/apt/sources.list /etc/apt/preferences 2>/dev/null | tr '\n' ' ' || true)
    upgradable=''
    if [ -f "$cache" ] && [ "$(head -n 1 "$cache")" = "$key" ]; then
        upgradable=$(sed -n 2p "$cache")
    fi
    # A simulation that fails (broken sources, a held lock) leaves the count
    # empty and uncached: the apt step then runs and shows apt's own error.
    if [ -z "$upgradable" ] && simulated=$(apt-get -s -o Debug::NoLocking=true upgrade 2>/dev/null); then
        upgradable=$(grep -c '^Inst' <<<"$simulated" || true)
        # Best effort: an unwritable home only costs the next run the simulation.
        { mkdir -p "${cache%/*}" && printf '%s\n%s\n' "$key" "$upgradable" >"$cache.$$" && mv -f "$cache.$$" "$cache"; } 2>/dev/null || true
    fi
    kv apt.upgradable "$upgradable"
else
    kv apt.lists_age ''
    kv apt.upgradable ''
fi

# Debian's archive entries lacking a component the NVIDIA driver needs: the
# files debian-components.sh would change (debian_sources_rewrite, its
# rewrite: scripts/lib/debian-sources-rewrite.sh, which playbooks/src/facts.rs
# puts in front of this script).
codename=$(
    # shellcheck source=/dev/null # the host's file
    . /etc/os-release && printf '%s' "${VERSION_CODENAME:-}"
)
lacking=''
if [ -n "$codename" ]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        if [ "$(debian_sources_rewrite "$f" "$codename" "$DEBIAN_COMPONENTS")" != "$(cat "$f")" ]; then
            lacking="$lacking $f"
        fi
    done
fi
kv apt.debian_components_lacking "${lacking# }"

# Our apt sources and keys (written by apt-source.sh).
for f in /etc/apt/sources.list.d/image-provision-*.list; do
    [ -e "$f" ] || continue
    name=${f##*/image-provision-}
    kv "source.${name%.list}" "$(grep -m1 '^deb ' "$f" || true)"
done

# Docker: the CLI, compose v2, the service, the group, the runtimes.
if command -v docker >/dev/null 2>&1; then
    kv docker.version "$(docker --version 2>/dev/null || true)"
    kv docker.compose "$(docker compose version 2>/dev/null || true)"
    # As the user, without sudo: works only once the group applies to this
    # session (root's answer comes from docker_root_facts). `docker info`
    # exits 0 even when the daemon refuses it (Docker 23 and later print the
    # error on stderr), so the answer is the server version it printed. A
    # daemon that is restarting must not hang the facts: a time limit.
    if [ "$EUID" -ne 0 ]; then
        if [ -n "$(timeout 20 docker info --format '{{.ServerVersion}}' 2>/dev/null || true)" ]; then
            kv docker.user_access yes
        else
            kv docker.user_access no
        fi
    fi
fi
# As root (run_root_facts): the daemon's runtimes.
docker_root_facts() {
    command -v docker >/dev/null 2>&1 || return 0
    local runtimes
    # As above: judged by what it printed ("null" when the daemon refused).
    runtimes=$(timeout 20 docker info --format '{{json .Runtimes}}' 2>/dev/null || true)
    [ "$runtimes" != null ] || runtimes=''
    kv docker.runtimes "$runtimes"
    if [ "${ROOT_FACTS_VIA:-}" != sudo ]; then
        # Running as root itself: root's own access is the same answer.
        if [ -n "$runtimes" ]; then kv docker.user_access yes; else kv docker.user_access no; fi
    fi
}
if command -v systemctl >/dev/null 2>&1; then
    kv docker.enabled "$(systemctl is-enabled docker 2>/dev/null || true)"
    kv docker.active "$(systemctl is-active docker 2>/dev/null || true)"
fi
IFS=: read -r _ _ _ members < <(getent group docker || true) || true
kv docker.group "${members:-}"
if [ -r /etc/docker/daemon.json ] && grep -q '"nvidia"' /etc/docker/daemon.json; then
    kv docker.daemon_json_nvidia yes
else
    kv docker.daemon_json_nvidia no
fi

# NVIDIA: does the driver answer, and what does it report?
if command -v nvidia-smi >/dev/null 2>&1; then
    # A wedged GPU can make nvidia-smi hang: a time limit.
    rc=0
    out=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
        kv nvidia.smi "$out"
    elif [ "$rc" -eq 124 ]; then
        kv nvidia.smi_error "nvidia-smi did not answer within 30 s"
    else
        kv nvidia.smi_error "$(printf '%s' "$out" | tail -n 2)"
    fi
fi
if [ -e /var/run/reboot-required ]; then kv reboot_required yes; else kv reboot_required no; fi
