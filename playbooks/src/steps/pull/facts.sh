# shellcheck shell=bash
# The pull step's facts (playbooks/src/steps/pull): the background pull that
# start-pull.sh started, running or done, with its result. As root:
# pull_facts runs in root's shell (facts_root_send).
# Inputs: BASE_DIR.

root_facts_env+=(BASE_DIR)
pull_facts() {
    # The pid lives in /run (gone after a reboot, like the pull itself), the
    # result beside the layout.
    local pidf=/run/image-provision/pull.pid
    # Read in bash (facts_read: as $(cat FILE) gives it, no fork).
    if facts_read "$pidf" && kill -0 "$facts_file" 2>/dev/null; then
        kv pull.state running
    elif [ -f "$BASE_DIR/.image-provision/pull.done" ]; then
        facts_read "$BASE_DIR/.image-provision/pull.done" || true
        kv pull.state "done $facts_file"
    else
        kv pull.state none
    fi
}
