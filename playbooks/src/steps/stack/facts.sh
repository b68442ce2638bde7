# shellcheck shell=bash
# The stack step's facts (playbooks/src/steps/stack): what was deployed (the
# stamp stack-up.sh writes), the directories compose records as the stack's
# project directory (its containers are picked from the shared listing by
# them), the services compose would run, those of them that need the LLM,
# and whether config/llm.env has a key; which of them read each config/*.env
# file, and the names each of those files sets (never a value: a service
# that exits without its keys is left off, see layout/keys.rs). As root:
# stack_facts runs in root's shell (facts_root_send), after containers_facts.
# Inputs: BASE_DIR.

root_facts_env+=(BASE_DIR)
stack_facts() {
    local base=$BASE_DIR real_dir line
    # Few forks: this runs on every re-run (one readlink, one sha256sum).
    facts_read "$base/.image-provision/deployed" || true
    kv stack.deployed "$facts_file"
    # Docker must answer (containers_facts ran first), and the layout be there.
    [ "${containers_listed:-no}" = yes ] || return 0
    [ -f "$base/.env" ] && [ -e "$base/docker-compose.yml" ] || return 0
    # compose records BASE_DIR as the working directory (.env's COMPOSE_FILE
    # puts the first compose file there) or, should it resolve
    # docker-compose.yml's symlink, the clone itself. Either counts.
    # (`exec`: the command substitution's own process runs it; with a
    # redirection bash would fork once more.)
    real_dir=$(exec readlink -f -- "$base/docker-compose.yml" 2>/dev/null) || true
    kv stack.project_dirs "$base ${real_dir%/*}"

    # Whether config/llm.env gives the LLM services a key (never the key).
    # (As compose reads it: `export `, `=` or `:`, a value quoted or not.)
    local llm_key=no
    local key_re="^[[:space:]]*(export[[:space:]]+)?LLM_API_KEY[[:space:]]*[=:][[:space:]]*(\"[^\"]|'[^']|[^[:space:]#\"'])"
    if facts_read "$base/config/llm.env"; then
        while IFS= read -r line; do
            if [[ $line =~ $key_re ]]; then
                llm_key=yes
                break
            fi
        done <<<"$facts_file"
    fi
    kv stack.llm_key "$llm_key"

    # The services compose would run, those of them that read
    # config/llm.env (they exit at start-up without a key), and which read
    # each config/*.env file ("FILE=SERVICE SERVICE;..."). Loading the
    # whole project is slow (two compose starts, two jq), so the answer is
    # kept, keyed by what it depends on: .env (which holds COMPOSE_FILE and
    # COMPOSE_PROFILES) and the compose files, by their content's hash.
    local key f cache=/var/cache/image-provision/compose-services services='' llm='' readers='' json files='' content=''
    local compose=(docker compose --project-directory "$base" --env-file "$base/.env")
    facts_read "$base/.env" || true
    while IFS= read -r line; do
        [[ $line != COMPOSE_FILE=* ]] || files=${line#COMPOSE_FILE=}
    done <<<"$facts_file"
    for f in .env ${files//:/ }; do
        case $f in /*) ;; *) f=$base/$f ;; esac
        if facts_read "$f"; then content+="$facts_file"$'\n'; else content+="absent $f"$'\n'; fi
    done
    key=$(exec sha256sum <<<"$content")
    key="v5 $base ${key%% *}"
    if facts_cache_get "$cache" "$key"; then
        services=${facts_cached%%$'\n'*}
        facts_cached=${facts_cached#*$'\n'}
        llm=${facts_cached%%$'\n'*}
        readers=${facts_cached#*$'\n'}
    fi
    if [ -z "$services" ]; then
        services=$(timeout 60 "${compose[@]}" config --services 2>/dev/null | sort | tr '\n' ' ' || true)
        # The model as written: compose's normalized one has read the env
        # files into each service's environment and dropped env_file.
        # Entries are paths, or {path, required} objects (compose 2.24+).
        json=$(timeout 60 "${compose[@]}" config --no-normalize --no-interpolate --format json 2>/dev/null || true)
        llm=$(jq -r --arg active " $services" '.services | to_entries[]
            | select(.key as $k | $active | contains(" " + $k + " "))
            | select([.value.env_file // [] | if type == "array" then .[] else . end
                      | if type == "object" then .path else . end
                      | select(endswith("/llm.env"))] | length > 0)
            | .key' <<<"$json" 2>/dev/null | sort | tr '\n' ' ' || true)
        readers=$(jq -r --arg active " $services" '[.services | to_entries[]
            | select(.key as $k | $active | contains(" " + $k + " "))
            | .key as $service
            | .value.env_file // [] | if type == "array" then .[] else . end
            | if type == "object" then .path else . end
            | sub(".*/"; "") | select(test("^[A-Za-z0-9_.-]+\\.env$"))
            | {file: ., service: $service}]
            | group_by(.file) | map("\(.[0].file)=\(map(.service) | unique | join(" "))") | join(";")' \
            <<<"$json" 2>/dev/null || true)
        if [ -n "$services" ]; then
            facts_cache_put "$cache" "$key" "$services"$'\n'"$llm"$'\n'"$readers"
        fi
    fi
    kv stack.services "$services"
    kv stack.llm_services "$llm"

    # Per file its readers, and the names it sets as compose reads them
    # (`export `, `=` or `:`; a name alone sets nothing), in bash: this runs
    # on every re-run. Only the name is kept of a line, never its value.
    local entry file names line
    local -a entries
    IFS=';' read -r -a entries <<<"$readers"
    for entry in ${entries[@]+"${entries[@]}"}; do
        file=${entry%%=*}
        kv "stack.env_readers.$file" "${entry#*=}"
        names=''
        if [ -f "$base/config/$file" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                if [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z0-9_.-]+)[[:space:]]*[=:] ]]; then
                    names="$names ${BASH_REMATCH[2]}"
                fi
            done <"$base/config/$file"
        fi
        kv "stack.env_keys.$file" "${names# }"
    done

    # The last lines of the log of each of the stack's containers that is
    # not running or not healthy (none on a healthy stack, so nothing to
    # pay for then), but those left out for want of an LLM.
    local dir service state name status lines
    while IFS=$'\t' read -r _ dir service state name status; do
        [ -n "$name" ] || continue
        case " $base ${real_dir%/*} " in *" $dir "*) ;; *) continue ;; esac
        if [ "$state" = running ] && [[ $status != *"(unhealthy)"* && $status != *"(health: starting)"* ]]; then
            continue
        fi
        if [ "${llm_key:-no}" = no ] && [[ " $llm " == *" $service "* ]]; then
            continue
        fi
        lines=$(timeout 10 docker logs --tail 5 "$name" 2>&1 | tr -d '\r' | tail -n 5 | tr '\n' '\036' || true)
        kv "stack.log.$service" "${lines%$'\036'}"
    done <<<"${containers_listing:-}"
}
