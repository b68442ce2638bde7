# shellcheck shell=bash
# The host's facts every step reads (playbooks/src/host): the distribution,
# the SSH user, the GPU, and which of the packages the steps install are
# installed. Runs as the SSH user, after the facts prelude.
# Inputs: PACKAGES, the space-separated package names whose state to report.

# Read in bash (the prelude's facts_os_release): no subshell to source it.
facts_os_release
kv os.id "${facts_os[ID]:-}"
kv os.version "${facts_os[VERSION_ID]:-}"
kv os.codename "${facts_os[VERSION_CODENAME]:-}"
kv os.pretty "${facts_os[PRETTY_NAME]:-}"
# The user's name without a fork: bash's prompt expansion of \u asks
# getpwuid(3), as `id -un` does.
host_user='\u'
kv user "${host_user@P}"

# What lspci and dpkg-query answer depends on the PCI devices (fixed for a
# boot), lspci and its ID list, and dpkg's status (and its journal): their answers are kept in
# the user's cache, keyed by the boot, those files' stat and the packages
# asked about. One stat; lspci, grep and dpkg-query only when it changed.
host_boot=''
[ ! -r /proc/sys/kernel/random/boot_id ] || read -r host_boot </proc/sys/kernel/random/boot_id
host_lspci=lspci
! hash lspci 2>/dev/null || host_lspci=${BASH_CMDS[lspci]}
# `exec`: the command substitution's own process runs stat (with a
# redirection, bash would fork once more).
host_stat=$(exec stat -L -c '%n %i %s %y' /var/lib/dpkg/status /var/lib/dpkg/updates \
    /usr/share/misc/pci.ids /usr/share/hwdata/pci.ids "$host_lspci" 2>/dev/null) || true
host_key="v1 $host_boot ${PACKAGES:-} $host_stat"
if facts_cache_get "$facts_user_cache/host" "$host_key"; then
    printf '%s\n' "$facts_cached"
else
    host_answer=$(
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

        # Installed packages among those asked about: pkg.NAME=VERSION, and
        # held.NAME=yes for those held.
        if [ -n "${PACKAGES:-}" ]; then
            # shellcheck disable=SC2086 # PACKAGES is a list of words on purpose
            dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n' $PACKAGES 2>/dev/null |
                while IFS=$'\t' read -r name status version; do
                    # ii: installed; hi: installed and held (apt-mark hold).
                    case $status in
                    ii*) kv "pkg.$name" "$version" ;;
                    hi*) kv "pkg.$name" "$version" && kv "held.$name" yes ;;
                    esac
                done || true
        fi
    )
    printf '%s\n' "$host_answer"
    # Not without a boot id: the devices could change unseen.
    [ -z "$host_boot" ] || facts_cache_put "$facts_user_cache/host" "$host_key" "$host_answer"
fi
