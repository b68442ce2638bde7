# shellcheck shell=bash
# The llm step's facts (playbooks/src/steps/llm): whether the local LLM's
# key exists, the model the stack's config/llm.env names, and the models
# the LLM serves (GET /v1/models with the key, which goes to curl on
# stdin). With LLM_CHAT=yes (verify and update), one tiny chat completion
# and its time in ms (llm.chat_ms), or why it failed (llm.chat_error). As
# root (the key is root's): llm_facts runs in run_root_facts.
# Inputs: LLM_DIR; BASE_DIR; LLM_CHAT (yes|no).

root_facts_env+=(LLM_DIR BASE_DIR LLM_CHAT)
llm_facts() {
    [ -s "$LLM_DIR/key.env" ] || return 0
    kv llm.key yes
    local key models
    kv llm.env_model "$(sed -n 's/^LLM_MODEL=//p' "$BASE_DIR/IMAGE-server/config/llm.env" 2>/dev/null | head -n 1)"
    kv llm.env_url "$(sed -n 's/^LLM_URL=//p' "$BASE_DIR/IMAGE-server/config/llm.env" 2>/dev/null | head -n 1)"
    key=$(sed -n 's/^VLLM_API_KEY=//p' "$LLM_DIR/key.env")
    # Compared here: the key itself is never printed.
    if [ "$(sed -n 's/^LLM_API_KEY=//p' "$BASE_DIR/IMAGE-server/config/llm.env" 2>/dev/null | head -n 1)" = "$key" ]; then
        kv llm.env_key yes
    fi
    if models=$(printf 'header = "Authorization: Bearer %s"\n' "$key" |
        curl -fsS --max-time 5 -K - http://127.0.0.1:8000/v1/models 2>/dev/null); then
        kv llm.serves "$(jq -r '[.data[]?.id] | join(" ")' <<<"$models" 2>/dev/null || true)"
    fi
    if [ "${LLM_CHAT:-no}" = yes ]; then
        local model body seconds
        model=$(sed -n 's/^LLM_MODEL=//p' "$BASE_DIR/IMAGE-server/config/llm.env" 2>/dev/null | head -n 1)
        body=$(jq -nc --arg m "$model" '{model: $m, max_tokens: 4, messages: [{role: "user", content: "Say OK."}]}')
        if seconds=$(printf 'header = "Authorization: Bearer %s"\n' "$key" |
            curl -fsS --max-time 60 -K - -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
                -d "$body" http://127.0.0.1:8000/v1/chat/completions 2>&1); then
            kv llm.chat_ms "$(awk -v s="$seconds" 'BEGIN { printf "%d", s * 1000 }')"
        else
            kv llm.chat_error "$seconds"
        fi
    fi
}
