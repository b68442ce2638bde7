#!/bin/bash
# `update --upgrade-driver`: the NVIDIA driver packages the nvidia step held
# (hold-driver.sh) changed on purpose. On Ubuntu, a driver of a lower branch
# than TARGET's moves to TARGET (its install removes the old branch, whose
# packages conflict with it); otherwise the held packages are upgraded to
# their candidates. The hold is lifted first and put back after, also when
# the change fails. Prints what changed (`upgraded PACKAGE VERSION`, or
# `moved from OLD to NEW VERSION`) and then `reboot needed` (the new
# libraries need the new kernel module, which loads at boot), or that the
# driver is the newest.
# Inputs: LOCK_TIMEOUT (seconds to wait for the dpkg lock); TARGET (the
# metapackage of the branch to be on, e.g. nvidia-driver-580-server; Ubuntu
# only). driver_packages comes from driver-packages.sh, put in front.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
nvidia='^(lib)?nvidia-|^linux-(modules|objects|signatures)-nvidia-'
mapfile -t held < <(apt-mark showhold | grep -E "$nvidia" || true)
if [ ${#held[@]} -eq 0 ]; then
    echo "no NVIDIA driver package is held: image-provision did not install this driver (or its hold was lifted);" \
        "upgrade it by hand, then reboot" >&2
    exit 3
fi
# shellcheck source=/dev/null # the host's file
os=$(. /etc/os-release && printf '%s' "${ID:-}")
installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^[ih]i'; }
branch() { sed -n 's/^nvidia-driver-\([0-9][0-9]*\).*/\1/p' <<<"$1"; }
old=$(printf '%s\n' "${held[@]}" | grep -E '^nvidia-driver-[0-9]+' | head -n 1 || true)
move=no
if [ "$os" = ubuntu ] && [ -n "$TARGET" ] && [ -n "$old" ] && ! installed "$TARGET" &&
    [ "$(branch "$old")" -lt "$(branch "$TARGET")" ]; then
    move=yes
fi
versions() { dpkg-query -W -f '${Package} ${Version}\n' "${held[@]}" 2>/dev/null || true; }
before=$(versions)
# Held again whatever happens: the new branch's packages once installed,
# else what was held.
rehold() {
    local now=()
    if installed "$TARGET"; then mapfile -t now < <(driver_packages "$TARGET"); fi
    [ ${#now[@]} -gt 0 ] || mapfile -t now < <(for p in "${held[@]}"; do installed "$p" && echo "$p"; done)
    [ ${#now[@]} -eq 0 ] || apt-mark hold "${now[@]}" >/dev/null
}
trap rehold EXIT
apt-mark unhold "${held[@]}" >/dev/null
apt=(apt-get -y -q -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT"
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${apt[@]}" update >&2
if [ "$move" = yes ]; then
    # The old branch's packages conflict with the new one's: apt removes
    # them as it installs.
    "${apt[@]}" install --no-install-recommends "$TARGET" >&2
    echo "moved from $old to $TARGET $(dpkg-query -W -f '${Version}' "$TARGET")"
    echo "reboot needed"
    exit 0
fi
"${apt[@]}" install --only-upgrade --no-install-recommends "${held[@]}" >&2
after=$(versions)
if [ "$before" = "$after" ]; then
    echo "the driver is the newest available: $(head -n 1 <<<"$after")"
else
    # diff exits 1 when they differ, which they do here.
    { diff <(echo "$before") <(echo "$after") || true; } | sed -n 's/^> /upgraded /p'
    echo "reboot needed"
fi
