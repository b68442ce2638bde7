#!/bin/bash
# The local LLM's web UI up, never reachable without a login:
#   - its session key made once and kept (WEBUI_DIR/secret.env, 0600);
#   - the LLM's key for it (llm-key.env, 0600) from the local LLM's own
#     key file, when the runtime has one;
#   - compose up with Traefik's route off (WEBUI_ROUTED=false in the
#     project's .env) until the first admin's sign-in has worked on the
#     host's loopback port: Open WebUI makes that admin from admin.env as it
#     starts, and were it not made, the first sign-up would become admin;
#   - then the route on (WEBUI_ROUTED=true), and up again.
# A data directory whose admin has another password (local state lost) is
# kept as it is and said so: its route stays as it was.
# The admin's password goes to curl on stdin, never on a command line.
# Inputs: WEBUI_DIR; LOCAL_PORT; LLM_KEY_FILE, LLM_KEY_VAR, LLM_KEY_AS (the
# runtime's key file, the variable in it and the one Open WebUI reads;
# empty: the runtime has no key); TIMEOUT (seconds).
set -euo pipefail
umask 077
cd -- "$WEBUI_DIR"
mkdir -p data
if [ ! -s secret.env ]; then
    printf 'WEBUI_SECRET_KEY=%s\n' "$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n')" >secret.env.tmp
    mv secret.env.tmp secret.env
    echo "generated the web UI's session key in $WEBUI_DIR/secret.env"
fi
if [ -n "$LLM_KEY_FILE" ]; then
    key=$(sed -n "s/^$LLM_KEY_VAR=//p" "$LLM_KEY_FILE")
    [ -n "$key" ] || { echo "no $LLM_KEY_VAR in $LLM_KEY_FILE: the local LLM's step makes it" >&2; exit 1; }
    printf '%s=%s\n' "$LLM_KEY_AS" "$key" >llm-key.env.tmp
else
    : >llm-key.env.tmp
fi
mv llm-key.env.tmp llm-key.env
routed=$(sed -n 's/^WEBUI_ROUTED=//p' .env 2>/dev/null || true)
up() {
    timeout --kill-after=30 "$TIMEOUT" docker compose --project-directory "$WEBUI_DIR" -f "$WEBUI_DIR/docker-compose.yml" up -d
}
[ "$routed" = true ] || printf 'WEBUI_ROUTED=false\n' >.env
echo "starting the web UI (its image's pull may take minutes; time limit $TIMEOUT s)"
up
deadline=$((SECONDS + TIMEOUT))
until curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$LOCAL_PORT/health" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the web UI does not answer /health after $TIMEOUT s; webui is $(docker inspect -f '{{.State.Status}}' webui 2>/dev/null || echo absent); its log ends:" >&2
        docker logs --tail 5 webui 2>&1 | sed 's/^/  /' >&2 || true
        exit 1
    fi
    sleep 2
done
email=$(sed -n 's/^WEBUI_ADMIN_EMAIL=//p' admin.env)
# jq reads the password from the file: it is never in an argument.
body=$(jq -Rnc '[inputs | capture("^(?<key>[A-Z_]+)=(?<value>.*)$")] | from_entries
    | {email: .WEBUI_ADMIN_EMAIL, password: .WEBUI_ADMIN_PASSWORD}' admin.env)
code=$(printf '%s' "$body" | curl -sS --max-time 30 -o /dev/null -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @- "http://127.0.0.1:$LOCAL_PORT/api/v1/auths/signin" || true)
if [ "$code" != 200 ]; then
    echo "the web UI's admin $email cannot sign in with the password image-provision keeps for it (HTTP $code):" \
        "its data ($WEBUI_DIR/data) has an admin made with another password, or the admin was not made;" \
        "its route stays $([ "$routed" = true ] && echo on || echo off)" >&2
    exit 1
fi
echo "the admin $email signs in"
if [ "$routed" != true ]; then
    printf 'WEBUI_ROUTED=true\n' >.env
    up
    echo "Traefik routes the web UI now"
fi
