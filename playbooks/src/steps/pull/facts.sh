# shellcheck shell=bash
# The pull step's facts (playbooks/src/steps/pull): the background pull that
# start-pull.sh started, running or done, with its result. As root:
# pull_facts runs in run_root_facts.
# Inputs: BASE_DIR.

root_facts_env+=(BASE_DIR)
pull_facts() {
    # The pid lives in /run (gone after a reboot, like the pull itself), the
    # result beside the layout.
    local pidf=/run/image-provision/pull.pid
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        kv pull.state running
    elif [ -f "$BASE_DIR/.image-provision/pull.done" ]; then
        kv pull.state "done $(cat "$BASE_DIR/.image-provision/pull.done")"
    else
        kv pull.state none
    fi
}
