#!/bin/bash
# Stand-in for reboot(8) and shutdown(8) inside a test host. start.sh installs
# it as /usr/sbin/reboot and /usr/sbin/shutdown (/sbin is a link to usr/sbin).
#
# It records every call in /var/log/standin/calls.log, then asks the test
# host's supervisor to reboot (by creating /run/standin/reboot-request) and
# waits to be killed with everything else: the caller's SSH connection drops,
# as it does on a real host. Anything it does not know (poweroff, halt, a
# delayed or cancelled shutdown, unknown options) fails with exit status 1.
set -euo pipefail

name=${0##*/}
record() {
    { mkdir -p /var/log/standin &&
        printf '%s uid=%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(id -u)" "$name" "$*" >>/var/log/standin/calls.log
    } 2>/dev/null || true
}
unknown() {
    echo "$name (test host stand-in): unsupported: $*" >&2
    exit 1
}

record "$@"
case $name in
reboot)
    for arg in "$@"; do
        case $arg in
        -f | --force | --no-wall) ;;
        *) unknown "$arg" ;;
        esac
    done
    ;;
shutdown)
    reboot=no
    for arg in "$@"; do
        case $arg in
        -r | --reboot) reboot=yes ;;
        now | +0 | --no-wall) ;;
        *) unknown "$arg" ;;
        esac
    done
    [ "$reboot" = yes ] || unknown "only 'shutdown -r now' is supported (got: shutdown $*)"
    ;;
*) unknown "installed as '$name'" ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "$name: must be superuser." >&2
    exit 1
fi

mkdir -p /run/standin
: >/run/standin/reboot-request
# The supervisor kills every process of the host, this one included.
sleep 30
echo "$name (test host stand-in): the supervisor did not reboot the host" >&2
exit 1
