# shellcheck shell=bash
# The apt step's facts (playbooks/src/steps/apt): an interrupted dpkg, the
# package lists' age and how many packages an upgrade would install. Runs as
# the SSH user.

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
