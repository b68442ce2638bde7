# shellcheck shell=bash
# The reboot step's facts (playbooks/src/steps/reboot): has a package asked
# for a reboot? Runs as the SSH user.
if [ -e /var/run/reboot-required ]; then kv reboot_required yes; else kv reboot_required no; fi
