# shellcheck shell=bash
# The upkeep step's facts (playbooks/src/steps/upkeep): for each of
# image-provision's units on the host, whether it is enabled and active, as
# `upkeep.UNIT=ENABLED ACTIVE` (as `systemctl is-enabled` and `is-active`
# word them); then the expiry (below). systemd is asked only about units
# whose file exists (a host without them needs no answer, and a test host
# without systemd has none). Runs as the SSH user.
# Inputs: UPKEEP_UNITS, the space-separated unit names.

upkeep_present=()
for unit in ${UPKEEP_UNITS:-}; do
    [ ! -e "/etc/systemd/system/$unit" ] || upkeep_present+=("$unit")
done
# Their states come from the facts' one `systemctl show` (the prelude's
# facts_units), read after root's part, beside which it runs.
if [ ${#upkeep_present[@]} -gt 0 ]; then
    facts_units+=("${upkeep_present[@]}")
    upkeep_units_answer() {
        local unit
        facts_units_read
        for unit in "${upkeep_present[@]}"; do
            kv "upkeep.$unit" "${facts_unit_enabled[$unit]:-unknown} ${facts_unit_active[$unit]:-unknown}"
        done
    }
    facts_after_root+=(upkeep_units_answer)
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
