# shellcheck shell=bash
# The llm step's facts (playbooks/src/steps/llm), for each local runtime
# image-provision may have set up (vLLM in VLLM_DIR, Ollama in OLLAMA_DIR),
# under llm.RUNTIME.: whether it is set up (vLLM: its key exists; Ollama:
# its compose file), whether config/llm.env's key is its own (compared
# here: the key itself is never printed), the models it serves (GET
# /v1/models, the key to curl on stdin), and the settings its
# config/RUNTIME.env holds (a hash of its lines but comments and HF_TOKEN's,
# which stays on the host). Also config/llm.env's LLM_MODEL and LLM_URL.
# With LLM_CHAT=yes (verify and update), one tiny chat completion with the
# runtime llm.env names, and its time in ms (llm.chat_ms), or why it failed
# (llm.chat_error). As root (vLLM's key is root's): llm_facts runs in
# root's shell (facts_root_send).
# Inputs: VLLM_DIR; OLLAMA_DIR; OLLAMA_KEY (the placeholder key); BASE_DIR;
# LLM_CHAT (yes|no).

root_facts_env+=(VLLM_DIR OLLAMA_DIR OLLAMA_KEY BASE_DIR LLM_CHAT)
# Shipped to root's shell beside llm_facts, which calls it.
root_facts_helpers+=(llm_runtime_facts)
# llm_runtime_facts NAME PORT KEY: one runtime's facts (see above).
llm_runtime_facts() {
    local name=$1 port=$2 key=$3 models settings config=$BASE_DIR/IMAGE-server/config
    kv "llm.$name.set_up" yes
    if [ "$(sed -n 's/^LLM_API_KEY=//p' "$config/llm.env" 2>/dev/null | head -n 1)" = "$key" ]; then
        kv "llm.$name.env_key" yes
    fi
    if models=$(printf 'header = "Authorization: Bearer %s"\n' "$key" |
        curl -fsS --max-time 5 -K - "http://127.0.0.1:$port/v1/models" 2>/dev/null); then
        kv "llm.$name.serves" "$(jq -r '[.data[]?.id] | join(" ")' <<<"$models" 2>/dev/null || true)"
    fi
    if [ -f "$config/$name.env" ]; then
        settings=$(grep -v -E -e '^[[:space:]]*(#|$)' -e '^[[:space:]]*HF_TOKEN=' "$config/$name.env" | LC_ALL=C sort | sha256sum)
        kv "llm.$name.settings" "${settings%% *}"
    fi
}
# llm_env_values FILE: FILE's first LLM_MODEL= and LLM_URL= values (what
# `sed -n 's/^NAME=//p' FILE | head -n 1` prints), read in bash (this runs
# on every re-run), into llm_env_model and llm_env_url.
root_facts_helpers+=(llm_env_values)
llm_env_values() {
    local line rest
    llm_env_model='' llm_env_url=''
    local -i model=0 url=0
    facts_read "$1" || return 0
    rest=$facts_file
    while [ -n "$rest" ]; do
        line=${rest%%$'\n'*}
        if [ "$line" = "$rest" ]; then rest=''; else rest=${rest#*$'\n'}; fi
        case $line in
        LLM_MODEL=*) [ "$model" -eq 1 ] || llm_env_model=${line#LLM_MODEL=} model=1 ;;
        LLM_URL=*) [ "$url" -eq 1 ] || llm_env_url=${line#LLM_URL=} url=1 ;;
        esac
    done
}
llm_facts() {
    local env=$BASE_DIR/IMAGE-server/config/llm.env key='' port=''
    llm_env_values "$env"
    kv llm.env_model "$llm_env_model"
    kv llm.env_url "$llm_env_url"
    if [ -s "$VLLM_DIR/key.env" ]; then
        llm_runtime_facts vllm 8000 "$(sed -n 's/^VLLM_API_KEY=//p' "$VLLM_DIR/key.env")"
    fi
    if [ -s "$OLLAMA_DIR/docker-compose.yml" ]; then
        llm_runtime_facts ollama 11434 "$OLLAMA_KEY"
    fi
    if [ "${LLM_CHAT:-no}" = yes ]; then
        case $(sed -n 's/^LLM_URL=//p' "$env" 2>/dev/null | head -n 1) in
        http://vllm:8000/v1) port=8000 key=$(sed -n 's/^VLLM_API_KEY=//p' "$VLLM_DIR/key.env" 2>/dev/null) ;;
        http://ollama:11434/v1) port=11434 key=$OLLAMA_KEY ;;
        *) return 0 ;;
        esac
        local model body seconds
        model=$(sed -n 's/^LLM_MODEL=//p' "$env" 2>/dev/null | head -n 1)
        body=$(jq -nc --arg m "$model" '{model: $m, max_tokens: 4, messages: [{role: "user", content: "Say OK."}]}')
        if seconds=$(printf 'header = "Authorization: Bearer %s"\n' "$key" |
            curl -fsS --max-time 60 -K - -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
                -d "$body" "http://127.0.0.1:$port/v1/chat/completions" 2>&1); then
            kv llm.chat_ms "$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')"
        else
            kv llm.chat_error "$seconds"
        fi
    fi
}
