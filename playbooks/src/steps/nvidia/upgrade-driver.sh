#!/bin/bash
# `update --upgrade-driver`: the NVIDIA driver packages the nvidia step held
# (hold-driver.sh) upgraded on purpose: the hold lifted, the package lists
# fetched, the held NVIDIA packages upgraded to their candidates, and held
# again, also when the upgrade fails. Prints `upgraded PACKAGE VERSION` for
# each that changed and then `reboot needed` (the new libraries need the new
# kernel module, which loads at boot), or that the driver is the newest.
# Inputs: LOCK_TIMEOUT (seconds to wait for the dpkg lock).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
mapfile -t held < <(apt-mark showhold | grep -E '^(lib)?nvidia-|^linux-(modules|objects|signatures)-nvidia-' || true)
if [ ${#held[@]} -eq 0 ]; then
    echo "no NVIDIA driver package is held: image-provision did not install this driver (or its hold was lifted);" \
        "upgrade it by hand, then reboot" >&2
    exit 3
fi
versions() { dpkg-query -W -f '${Package} ${Version}\n' "${held[@]}"; }
before=$(versions)
trap 'apt-mark hold "${held[@]}" >/dev/null' EXIT
apt-mark unhold "${held[@]}" >/dev/null
apt=(apt-get -y -q -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT"
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${apt[@]}" update >&2
"${apt[@]}" install --only-upgrade --no-install-recommends "${held[@]}" >&2
after=$(versions)
if [ "$before" = "$after" ]; then
    echo "the driver is the newest available: $(head -n 1 <<<"$after")"
else
    # diff exits 1 when they differ, which they do here.
    { diff <(echo "$before") <(echo "$after") || true; } | sed -n 's/^> /upgraded /p'
    echo "reboot needed"
fi
