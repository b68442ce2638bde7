# shellcheck shell=bash
# The webui step's facts (playbooks/src/steps/webui): whether its session
# key exists, whether Traefik's route is on (the project's .env, written
# once the admin signed in), and whether the LLM key it holds is the local
# LLM runtime's (compared here: no key is printed). As root (its files are
# root's): webui_facts runs in root's shell (facts_root_send).
# Inputs: WEBUI_DIR; WEBUI_KEY_FILE, WEBUI_KEY_VAR (the runtime's key file
# and the variable in it; empty: the runtime has no key).

root_facts_env+=(WEBUI_DIR WEBUI_KEY_FILE WEBUI_KEY_VAR)
webui_facts() {
    [ -n "${WEBUI_DIR:-}" ] && [ -d "$WEBUI_DIR" ] || return 0
    if [ -s "$WEBUI_DIR/secret.env" ]; then kv webui.secret yes; fi
    if [ "$(sed -n 's/^WEBUI_ROUTED=//p' "$WEBUI_DIR/.env" 2>/dev/null)" = true ]; then kv webui.routed yes; fi
    [ -f "$WEBUI_DIR/llm-key.env" ] || return 0
    local held wanted=''
    held=$(sed -n 's/^[A-Z_]*=//p' "$WEBUI_DIR/llm-key.env" | head -n 1)
    if [ -n "${WEBUI_KEY_FILE:-}" ]; then
        wanted=$(sed -n "s/^$WEBUI_KEY_VAR=//p" "$WEBUI_KEY_FILE" 2>/dev/null | head -n 1)
        [ -n "$wanted" ] || return 0
    fi
    if [ "$held" = "$wanted" ]; then kv webui.llm_key yes; fi
    return 0
}
