# shellcheck shell=bash
# A library, not a script: the layout step (mod.rs beside this file) puts it
# in front of its facts script, which reports which of these files are absent
# and the mode and owner of the others (layout.env_absent, layout.env_stat),
# and of env-files.sh, which creates the absent ones and closes them all:
# one list, so the facts and the fix agree. The facts run it as root: the prelude's facts_root_send
# ships it to the root shell (root_facts_helpers).

# compose_env_files BASE: the config/*.env files compose will read, one name
# a line, sorted: every one named by the compose files in use under BASE
# (the IMAGE working directory), and those imageup and the stack always use.
compose_env_files() {
    {
        grep -ho 'config/[A-Za-z0-9_.-]*\.env' "$1/docker-compose.yml" "$1/site-docker-compose.yml" 2>/dev/null |
            sed 's|^config/||' || true
        printf '%s\n' express-common.env maps.env llm.env apis-and-selection.env azure-api.env imageup.env
    } | sort -u
}
