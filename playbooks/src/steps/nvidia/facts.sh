# shellcheck shell=bash
# The nvidia step's facts (playbooks/src/steps/nvidia): Debian's archive
# entries lacking the components the driver needs, whether Docker's
# daemon.json names the nvidia runtime, and what nvidia-smi says. Runs as the
# SSH user.
# Inputs: DEBIAN_COMPONENTS, the components Debian's archive entries should
# carry.

# Debian's archive entries lacking a component the NVIDIA driver needs: the
# files debian-components.sh would change (debian_sources_rewrite, its
# rewrite: debian-sources-rewrite.sh beside this file, put in front of both).
facts_os_release
codename=${facts_os[VERSION_CODENAME]:-}
# Two forks a file: the answer is kept in the user's cache, keyed by the
# files' stat (one stat), the codename and the components.
lacking=''
if [ -n "$codename" ]; then
    nvidia_files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ ! -f "$f" ] || nvidia_files+=("$f")
    done
    nvidia_key="v1 $codename $DEBIAN_COMPONENTS"
    if [ ${#nvidia_files[@]} -gt 0 ]; then
        nvidia_stat=$(exec stat -c '%n %i %s %y' -- "${nvidia_files[@]}" 2>/dev/null) || true
        nvidia_key+=" $nvidia_stat"
    fi
    if facts_cache_get "$facts_user_cache/debian-components" "$nvidia_key"; then
        lacking=$facts_cached
    else
        for f in ${nvidia_files[@]+"${nvidia_files[@]}"}; do
            if [ "$(debian_sources_rewrite "$f" "$codename" "$DEBIAN_COMPONENTS")" != "$(cat "$f")" ]; then
                lacking="$lacking $f"
            fi
        done
        lacking=${lacking# }
        facts_cache_put "$facts_user_cache/debian-components" "$nvidia_key" "$lacking"
    fi
fi
kv nvidia.debian_components_lacking "$lacking"

if facts_read /etc/docker/daemon.json && [[ $facts_file == *'"nvidia"'* ]]; then
    kv nvidia.daemon_json yes
else
    kv nvidia.daemon_json no
fi

# Does the driver answer, and what does it report? Asked now and read after
# root's part (facts_after_root), beside which it runs: the answer is as
# fresh as the facts.
if command -v nvidia-smi >/dev/null 2>&1; then
    # A wedged GPU can make nvidia-smi hang: a time limit. The first
    # word is its exit status.
    exec {nvidia_smi_fd}< <(
        rc=0
        out=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) || rc=$?
        printf '%s %s' "$rc" "$out"
    )
    nvidia_smi_answer() {
        local answer='' rc out
        answer=$(</dev/fd/"$nvidia_smi_fd") || true
        exec {nvidia_smi_fd}<&-
        rc=${answer%% *}
        out=${answer#* }
        if [ "$rc" = 0 ]; then
            kv nvidia.smi "$out"
        elif [ "$rc" = 124 ]; then
            kv nvidia.smi_error "nvidia-smi did not answer within 30 s"
        else
            # Its last two lines.
            [[ $out != *$'\n'*$'\n'* ]] || out=${out#"${out%$'\n'*$'\n'*}"$'\n'}
            kv nvidia.smi_error "$out"
        fi
    }
    facts_after_root+=(nvidia_smi_answer)
fi
