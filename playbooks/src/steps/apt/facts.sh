# shellcheck shell=bash
# The apt step's facts (playbooks/src/steps/apt): an interrupted dpkg, the
# package lists' age and how many packages an upgrade would install. Runs as
# the SSH user.

# Few forks: this runs before every step that acts and on every re-run. One
# stat for every file the answers below depend on (inode, size, mtime and
# epoch mtime each): dpkg and apt replace their files by rename, and a
# directory's mtime moves when a file in it comes, goes or is replaced.
apt_stamp=/var/lib/apt/periodic/update-success-stamp
# (`exec`: no second fork for the redirection.)
apt_stat=$(exec stat -c '%n %i %s %y %Y' $apt_stamp /var/lib/dpkg/status /var/lib/dpkg/updates /var/lib/dpkg/info \
    /var/lib/apt/lists /etc/apt /etc/apt/sources.list.d /etc/apt/preferences.d /etc/apt/apt.conf.d \
    /etc/apt/sources.list /etc/apt/preferences 2>/dev/null) || true
apt_dpkg_key="v1 $apt_stat"
apt_updated=''
if [[ $apt_stat == "$apt_stamp "* ]]; then
    apt_updated=${apt_stat%%$'\n'*}
    apt_updated=${apt_updated##* }
fi

# dpkg interrupted (a cut connection kills dpkg mid-install): packages left
# unpacked or half-configured, or journal entries dpkg has not applied. apt
# refuses to install anything until `dpkg --configure -a` has run. `dpkg
# --audit` reads dpkg's status, its journal and its info directory: its
# verdict is kept in the user's cache, keyed by those (and apt's files,
# which cost nothing more to key on).
apt_journal=()
for f in /var/lib/dpkg/updates/* /var/lib/dpkg/updates/.[!.]*; do
    [ ! -e "$f" ] || apt_journal+=("$f")
done
if [ ${#apt_journal[@]} -gt 0 ]; then
    kv dpkg.interrupted yes
elif facts_cache_get "$facts_user_cache/dpkg-audit" "$apt_dpkg_key"; then
    kv dpkg.interrupted "$facts_cached"
else
    apt_audit=no
    [ -z "$(dpkg --audit 2>/dev/null || true)" ] || apt_audit=yes
    kv dpkg.interrupted "$apt_audit"
    facts_cache_put "$facts_user_cache/dpkg-audit" "$apt_dpkg_key" "$apt_audit"
fi

# Age of the package lists: seconds since the last successful `apt-get
# update`, by the stamp it touches (ours passes apt the hook; Debian's and
# Ubuntu's periodic updates touch it too). The list files' own mtimes are
# the mirror's publish times, often days old right after an update. Empty
# without lists or stamp: the apt step then updates.
apt_lists=''
for f in /var/lib/apt/lists/*Packages* /var/lib/apt/lists/*Release; do
    if [ -f "$f" ]; then
        apt_lists=$f
        break
    fi
done
if [ -n "$apt_lists" ] && [ -n "$apt_updated" ]; then
    kv apt.lists_age "$((EPOCHSECONDS - apt_updated))"
    # What an upgrade would install depends only on dpkg's status, the lists
    # and apt's configuration, but simulating it takes a quarter of a second
    # or more: the count is kept in the user's cache, keyed by those files.
    upgradable=''
    if facts_cache_get "$facts_user_cache/apt-upgradable" "$apt_dpkg_key"; then
        upgradable=$facts_cached
    fi
    # A simulation that fails (broken sources, a held lock) leaves the count
    # empty and uncached: the apt step then runs and shows apt's own error.
    if [ -z "$upgradable" ] && simulated=$(apt-get -s -o Debug::NoLocking=true upgrade 2>/dev/null); then
        upgradable=$(grep -c '^Inst' <<<"$simulated" || true)
        facts_cache_put "$facts_user_cache/apt-upgradable" "$apt_dpkg_key" "$upgradable"
    fi
    kv apt.upgradable "$upgradable"
else
    kv apt.lists_age ''
    kv apt.upgradable ''
fi
