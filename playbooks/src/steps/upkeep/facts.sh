# shellcheck shell=bash
# The upkeep step's facts (playbooks/src/steps/upkeep): for each of
# image-provision's units on the host, whether it is enabled and active, as
# `upkeep.UNIT=ENABLED ACTIVE`. systemctl is asked only when one of the
# files exists (a host without them needs no answer, and a test host without
# systemd has none). Runs as the SSH user.
# Inputs: UPKEEP_UNITS, the space-separated unit names.

upkeep_present=()
for unit in ${UPKEEP_UNITS:-}; do
    [ ! -e "/etc/systemd/system/$unit" ] || upkeep_present+=("$unit")
done
if [ ${#upkeep_present[@]} -gt 0 ]; then
    mapfile -t upkeep_enabled < <(systemctl is-enabled -- "${upkeep_present[@]}" 2>/dev/null || true)
    mapfile -t upkeep_active < <(systemctl is-active -- "${upkeep_present[@]}" 2>/dev/null || true)
    for i in "${!upkeep_present[@]}"; do
        kv "upkeep.${upkeep_present[$i]}" "${upkeep_enabled[$i]:-unknown} ${upkeep_active[$i]:-unknown}"
    done
fi
