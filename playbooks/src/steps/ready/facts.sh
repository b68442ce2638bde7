# shellcheck shell=bash
# The ready step's facts (playbooks/src/steps/ready): is cloud-init done, and
# does anyone hold the dpkg/apt locks? Runs as the SSH user.

# cloud-init's state without waiting ("done", "running", "disabled", ...).
# `cloud-init status` starts Python (a quarter of a second and more on a
# small instance): a final answer (done, disabled) is kept in the user's
# cache for this boot, keyed by the files cloud-init writes as its stages
# run and those that enable or disable it; a change asks again.
# One stat for these files and the dpkg/apt locks (below; -L: a lock is
# taken on the file a link leads to), told apart by name: the key is the
# lines of the others, as their own stat printed them.
ready_lock_files=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
ready_files=()
if command -v cloud-init >/dev/null 2>&1; then
    hash cloud-init
    ready_files=("${BASH_CMDS[cloud-init]}" /run/cloud-init/status.json /run/cloud-init/result.json
        /run/cloud-init/enabled /run/cloud-init/disabled /etc/cloud/cloud-init.disabled)
fi
# (`exec`: no second fork for the redirection.)
ready_stat=$(exec stat -L -c '%n %i %s %y' -- ${ready_files[@]+"${ready_files[@]}"} "${ready_lock_files[@]}" 2>/dev/null) || true
ready_lines=''
ready_locks_found=()
while IFS= read -r ready_line; do
    ready_name=${ready_line%% *}
    case " ${ready_lock_files[*]} " in
    *" $ready_name "*)
        ready_line=${ready_line#* }
        # INODE PATH
        ready_locks_found+=("${ready_line%% *} $ready_name")
        ;;
    *) ready_lines+=${ready_lines:+$'\n'}$ready_line ;;
    esac
done <<<"$ready_stat"
if [ ${#ready_files[@]} -gt 0 ]; then
    ready_boot=''
    [ ! -r /proc/sys/kernel/random/boot_id ] || read -r ready_boot </proc/sys/kernel/random/boot_id
    ready_key="v1 $ready_boot $ready_lines"
    if [ -n "$ready_boot" ] && facts_cache_get "$facts_user_cache/cloud-init" "$ready_key"; then
        kv cloud_init "$facts_cached"
    else
        ready_status=$(cloud-init status 2>/dev/null | sed -n 's/^status: *//p' || true)
        kv cloud_init "$ready_status"
        case $ready_status in
        done | disabled) [ -z "$ready_boot" ] || facts_cache_put "$facts_user_cache/cloud-init" "$ready_key" "$ready_status" ;;
        esac
    fi
else
    kv cloud_init absent
fi

# The dpkg/apt locks: held when /proc/locks lists one of their inodes (apt
# takes fcntl locks, which flock(1) cannot see; fuser may not be installed).
# One stat (above); each lock file's inode looked for in /proc/locks as a
# line's MAJ:MIN:INODE field, the locked file's (the only field with a
# colon between two numbers; a regular expression a field cost
# milliseconds on a host with Docker's many locks). Reading /proc/locks
# takes the kernel's file-lock semaphore for writing, which waits out an
# RCU grace period (10 to 20 ms of waiting, no work): read by cat in the
# background, the answer given after root's part (facts_after_root).
if [ ${#ready_locks_found[@]} -gt 0 ]; then
    exec {ready_locks_fd}< <(exec cat /proc/locks 2>/dev/null)
    ready_locks_answer() {
        local locks='' line locked=''
        locks=$(</dev/fd/"$ready_locks_fd") || true
        exec {ready_locks_fd}<&-
        for line in "${ready_locks_found[@]}"; do
            [[ $locks != *[0-9a-f]:"${line%% *} "* ]] || locked="$locked ${line#* }"
        done
        kv apt.locked "${locked# }"
    }
    facts_after_root+=(ready_locks_answer)
else
    kv apt.locked ''
fi
