# shellcheck shell=bash
# The layout step's facts (playbooks/src/steps/layout): the directories
# (and, with another base directory, what /var/docker/image is), the clone
# and its submodule (and the credential helpers their configs name), root's
# git rewrite of GitHub's SSH URLs, and the
# config/*.env files compose reads: those absent, and the mode and owner of
# the others (`NAME=MODE:OWNER`); healthcheck.env's LOG_DIR. The links, like every path the step
# writes, are the files facts' (playbooks/src/template). All as root (the
# layout is root's): layout_facts runs in root's shell (facts_root_send).
# Inputs: BASE_DIR, the IMAGE working directory.

root_facts_helpers+=(compose_env_files)
root_facts_env+=(BASE_DIR)
layout_facts() {
    # Few forks: this runs on every re-run.
    local base=$BASE_DIR clone=$BASE_DIR/IMAGE-server
    local missing='' d
    for d in cache testing/warmup; do [ -d "$base/$d" ] || missing="$missing $d"; done
    kv layout.dirs_missing "${missing# }"
    # IMAGE's compose file and warmup use /var/docker/image literally: with
    # another base directory it must lead there.
    if [ "$base" != /var/docker/image ]; then
        if [ -L /var/docker/image ]; then
            kv layout.default_dir "link $(readlink /var/docker/image)"
        elif [ -e /var/docker/image ]; then
            kv layout.default_dir exists
        else
            kv layout.default_dir absent
        fi
    fi
    # git's answers (and compose_env_files') depend only on git's config
    # files and the compose files; git starts four times and grep, sed and
    # sort once each for them, so they are kept in root's cache, keyed by
    # those files' stat (one stat; absent ones are missing from it; `exec`:
    # with a redirection bash would fork once more).
    local git_bin=git key cache=/var/cache/image-provision/layout
    ! hash git 2>/dev/null || git_bin=${BASH_CMDS[git]}
    key=$(exec stat -L -c '%n %i %s %y' -- "$git_bin" /etc/gitconfig /root/.gitconfig /root/.config/git/config \
        "$clone/.git" "$clone/.git/config" "$clone/schemas/.git" "$clone/schemas/.git/config" \
        "$clone/.git/modules/schemas/config" "$base/docker-compose.yml" "$base/site-docker-compose.yml" 2>/dev/null) || true
    key="v1 $base $key"
    local answer names
    if facts_cache_get "$cache" "$key"; then
        names=${facts_cached%%$'\n'*}
        answer=${facts_cached#*$'\n'}
    else
        names=$(compose_env_files "$base" | tr '\n' ' ')
        answer=$(
            if command -v git >/dev/null 2>&1; then
                # root's global config: imageup runs as root and updates the submodule too.
                kv layout.git_rewrite "$(HOME=/root git config --global --get-all url.https://github.com/.insteadof || true)"
            fi
            if [ -d "$clone/.git" ]; then
                kv layout.clone yes
                kv layout.origin "$(git -C "$clone" config --get remote.origin.url || true)"
                # The credential helpers of the clone's own config and of its
                # submodule's (the names and the file's path, never a token), each
                # value after a '|': an empty one (which resets git's list) shows.
                kv layout.credential_helper "$(git -C "$clone" config --local --get-all credential.helper | sed 's/^/|/' | tr -d '\n' || true)"
                if [ -e "$clone/schemas/.git" ]; then
                    kv layout.submodule yes
                    kv layout.schemas_credential_helper \
                        "$(git -C "$clone/schemas" config --local --get-all credential.helper | sed 's/^/|/' | tr -d '\n' || true)"
                else
                    kv layout.submodule no
                fi
            else
                kv layout.clone no
            fi
        )
        facts_cache_put "$cache" "$key" "$names"$'\n'"$answer"
    fi
    printf '%s\n' "$answer"

    # The config/*.env files compose will read (compose_env_files:
    # compose-env-files.sh beside this file, put in front of this script and
    # of env-files.sh, which creates the absent ones and closes them all).
    local absent='' stats='' m u f
    local -A env_stat=()
    if [ -d "$clone/config" ]; then
        # shellcheck disable=SC2086 # one name per word
        while read -r m u f; do env_stat[$f]="$m:$u"; done < <(cd "$clone/config" 2>/dev/null && exec stat -L -c '%a %U %n' -- $names 2>/dev/null)
        for f in $names; do
            if [ ! -f "$clone/config/$f" ]; then
                absent="$absent $f"
            else
                stats="$stats $f=${env_stat[$f]:-}"
            fi
        done
    fi
    kv layout.env_absent "${absent# }"
    kv layout.env_stat "${stats# }"
    # healthcheck.env's LOG_DIR (a directory, no secret): the file is kept
    # as the server has it, with this one line made ours (keep-env-lines.sh).
    if facts_read "$clone/config/healthcheck.env"; then
        local line log_dir=''
        while IFS= read -r line; do
            [[ ! $line =~ ^[[:space:]]*LOG_DIR=(.*) ]] || log_dir=${BASH_REMATCH[1]}
        done <<<"$facts_file"
        kv layout.healthcheck_log_dir "$log_dir"
    fi
}
