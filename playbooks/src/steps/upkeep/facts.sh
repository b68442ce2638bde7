# shellcheck shell=bash
# The upkeep step's facts (playbooks/src/steps/upkeep): for each of
# image-provision's units on the host, whether it is enabled and active, as
# `upkeep.UNIT=ENABLED ACTIVE`; then the expiry (below). systemctl is asked
# only when one of the files exists (a host without them needs no answer,
# and a test host without systemd has none). Runs as the SSH user.
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

# The expiry the power-off holds (EXPIRES_AT in its service; on a host set
# up before the service carried it, its timer's description), read without
# a fork, and the host's clock, which decides whether it has passed.
upkeep_expire=/etc/systemd/system/image-provision-expire
if [ -e "$upkeep_expire.service" ]; then
    upkeep_at=
    while IFS= read -r upkeep_line; do
        case $upkeep_line in
        Environment=EXPIRES_AT=*) upkeep_at=${upkeep_line#Environment=EXPIRES_AT=} ;;
        esac
    done <"$upkeep_expire.service"
    if [ -z "$upkeep_at" ] && [ -e "$upkeep_expire.timer" ]; then
        while IFS= read -r upkeep_line; do
            case $upkeep_line in
            "Description=Power off at "*" (the server's expiry)")
                upkeep_at=${upkeep_line#Description=Power off at }
                upkeep_at=${upkeep_at% (the server\'s expiry)}
                ;;
            esac
        done <"$upkeep_expire.timer"
    fi
    kv expire.at "$upkeep_at"
fi
kv expire.now "$EPOCHSECONDS"

# The idle stop the host has: its IDLE_AFTER (seconds) and BASE_DIR, from
# its service, read without a fork.
upkeep_autostop=/etc/systemd/system/image-provision-autostop.service
if [ -e "$upkeep_autostop" ]; then
    while IFS= read -r upkeep_line; do
        case $upkeep_line in
        Environment=IDLE_AFTER=*) kv autostop.after "${upkeep_line#Environment=IDLE_AFTER=}" ;;
        Environment=BASE_DIR=*) kv autostop.base_dir "${upkeep_line#Environment=BASE_DIR=}" ;;
        esac
    done <"$upkeep_autostop"
fi
