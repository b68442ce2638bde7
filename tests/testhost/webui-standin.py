#!/usr/bin/env python3
"""A stand-in for Open WebUI's image (ghcr.io/open-webui/open-webui: not
reachable from the tests), the entry point of the test registry's image
under that name (tests/testhost/registry/oci-images.py webui).

It behaves as Open WebUI does where image-provision depends on it:
- its settings come from its environment; any variable that is not one of
  the settings below (or the container's own: PATH, HOSTNAME, HOME) stops
  it at start-up with "unknown setting", so a misspelt setting is caught
  here rather than ignored (the container's own, PATH, HOSTNAME, HOME, are
  not settings); WEBUI_AUTH must be True and WEBUI_SECRET_KEY set
  (image-provision always sets both); only the OpenAI-compatible connection
  is served here (ENABLE_OLLAMA_API=False), another stops it;
- its data in /app/backend/data (users.json), kept across restarts; with
  ENABLE_PERSISTENT_CONFIG on (its default), the settings it stores
  (sign-up, the LLM's URL and key) are those of its first start, whatever
  the environment says later (config.json), as Open WebUI's
  PersistentConfig does; off, the environment's hold;
- at start-up, with WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD and no user
  yet, it makes that admin before it listens (as Open WebUI's
  create_admin_user does), and sign-up is off from then on;
- POST /api/v1/auths/signin {email, password}: 200 with a token (signed
  with WEBUI_SECRET_KEY) for the right password, 400 otherwise;
- POST /api/v1/auths/signup: with no user yet, the account becomes admin
  whatever ENABLE_SIGNUP says (Open WebUI's first-admin rule, the window
  image-provision must close); after that 403 when ENABLE_SIGNUP is False;
- GET /api/models and POST /api/chat/completions need a token ("Authorization:
  Bearer" or the token cookie): 401 without; with one they ask the LLM at
  OPENAI_API_BASE_URL (/models, /chat/completions) with OPENAI_API_KEY;
- GET /health: {"status": true}; GET / and /auth: the page shell (the real
  one's pages load their data through the API above).
Anything else is 404 and logged as unknown. Each request is logged on
stderr, one line, as "METHOD PATH ..." with what it decided (never a
password, a key or a token); port 8080.
"""

import hashlib
import hmac
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA = "/app/backend/data"
SETTINGS = {
    "WEBUI_AUTH",
    "ENABLE_SIGNUP",
    "WEBUI_URL",
    "WEBUI_SECRET_KEY",
    "WEBUI_ADMIN_EMAIL",
    "WEBUI_ADMIN_PASSWORD",
    "WEBUI_ADMIN_NAME",
    "ENABLE_OPENAI_API",
    "OPENAI_API_BASE_URL",
    "OPENAI_API_KEY",
    "ENABLE_OLLAMA_API",
    "OLLAMA_BASE_URL",
    "ENABLE_PERSISTENT_CONFIG",
}
# The container's own, and LC_CTYPE, which Python sets itself in the C
# locale (PEP 538).
CONTAINER = {"PATH", "HOSTNAME", "HOME", "LC_CTYPE"}
LOG_LOCK = threading.Lock()
USERS_LOCK = threading.Lock()


def log(line):
    with LOG_LOCK:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def fail(message):
    log("open-webui (test stand-in): " + message)
    sys.exit(1)


def truthy(name, default):
    return os.environ.get(name, default).lower() == "true"


def digest(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000).hex()


def load_users():
    try:
        with open(os.path.join(DATA, "users.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def save_users(users):
    path = os.path.join(DATA, "users.json")
    with open(path + ".tmp", "w") as f:
        json.dump(users, f)
    os.replace(path + ".tmp", path)


def add_user(users, email, password, role):
    salt = os.urandom(8).hex()
    users.append({"email": email.lower(), "salt": salt, "hash": digest(password, salt), "role": role})
    save_users(users)


def main():
    unknown = sorted(k for k in os.environ if k not in SETTINGS and k not in CONTAINER)
    if unknown:
        fail("unknown setting(s): " + ", ".join(unknown))
    if not truthy("WEBUI_AUTH", "True"):
        fail("WEBUI_AUTH is off: this stand-in serves only with login required")
    secret = os.environ.get("WEBUI_SECRET_KEY", "")
    if not secret:
        fail("WEBUI_SECRET_KEY is empty")
    if truthy("ENABLE_OLLAMA_API", "True"):
        fail("ENABLE_OLLAMA_API is on: this stand-in serves only the OpenAI-compatible connection")
    base = os.environ.get("OPENAI_API_BASE_URL", "").rstrip("/")
    if truthy("ENABLE_OPENAI_API", "True") and not base:
        fail("OPENAI_API_BASE_URL is not set")
    llm_key = os.environ.get("OPENAI_API_KEY", "")
    signup = truthy("ENABLE_SIGNUP", "True")
    os.makedirs(DATA, exist_ok=True)
    stored_path = os.path.join(DATA, "config.json")
    if truthy("ENABLE_PERSISTENT_CONFIG", "True"):
        try:
            with open(stored_path) as f:
                stored = json.load(f)
            base, llm_key, signup = stored["openai_base"], stored["openai_key"], stored["signup"]
            log("start: the stored settings hold (ENABLE_PERSISTENT_CONFIG)")
        except FileNotFoundError:
            with open(stored_path, "w") as f:
                json.dump({"openai_base": base, "openai_key": llm_key, "signup": signup}, f)
    users = load_users()
    shown = sorted(k for k in os.environ if k in SETTINGS)
    log("start: settings " + " ".join(shown) + f"; {len(users)} user(s)")
    admin_email = os.environ.get("WEBUI_ADMIN_EMAIL", "")
    admin_password = os.environ.get("WEBUI_ADMIN_PASSWORD", "")
    if admin_email and admin_password and not users:
        add_user(users, admin_email, admin_password, "admin")
        signup = False
        if truthy("ENABLE_PERSISTENT_CONFIG", "True"):
            with open(stored_path, "w") as f:
                json.dump({"openai_base": base, "openai_key": llm_key, "signup": False}, f)
        log(f"start: admin {admin_email.lower()} made from the environment")

    def token_for(email):
        return email + "." + hmac.new(secret.encode(), email.encode(), hashlib.sha256).hexdigest()

    def user_of(token):
        email, _, mac = (token or "").rpartition(".")
        good = hmac.new(secret.encode(), email.encode(), hashlib.sha256).hexdigest()
        if not email or not hmac.compare_digest(mac, good):
            return None
        return next((u for u in load_users() if u["email"] == email), None)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, code, body, kind="application/json"):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            try:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
            except ValueError:
                return None

        def user(self):
            auth = self.headers.get("Authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "token" and token is None:
                    token = value
            return user_of(token)

        def llm(self, method, path, payload=None):
            data = None if payload is None else json.dumps(payload).encode()
            req = urllib.request.Request(base + path, data=data, method=method)
            req.add_header("Content-Type", "application/json")
            if llm_key:
                req.add_header("Authorization", "Bearer " + llm_key)
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, {"detail": f"the LLM answered {e.code}"}
            except (urllib.error.URLError, OSError) as e:
                return 502, {"detail": f"the LLM is not reachable: {e}"}

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/health":
                return self.answer(200, {"status": True})
            if path in ("/", "/auth"):
                log(f"GET {path} page")
                return self.answer(200, "<!doctype html><title>Open WebUI</title>", "text/html")
            if path == "/api/models":
                user = self.user()
                if user is None:
                    log("GET /api/models refused: not signed in")
                    return self.answer(401, {"detail": "Not authenticated"})
                code, body = self.llm("GET", "/models")
                log(f"GET /api/models user={user['email']} llm={code}")
                return self.answer(code, body)
            log(f"GET {path} unknown")
            self.answer(404, {"detail": "Not Found"})

        def do_POST(self):
            nonlocal signup
            path = self.path.split("?")[0]
            body = self.body()
            if path == "/api/v1/auths/signin":
                if not isinstance(body, dict):
                    return self.answer(422, {"detail": "email and password expected"})
                email = str(body.get("email", "")).lower()
                user = next((u for u in load_users() if u["email"] == email), None)
                if user is None or digest(str(body.get("password", "")), user["salt"]) != user["hash"]:
                    log(f"POST /api/v1/auths/signin email={email} refused")
                    return self.answer(400, {"detail": "The email or password provided is incorrect."})
                log(f"POST /api/v1/auths/signin email={email} ok")
                return self.answer(200, {"token": token_for(email), "email": email, "role": user["role"]})
            if path == "/api/v1/auths/signup":
                if not isinstance(body, dict):
                    return self.answer(422, {"detail": "name, email and password expected"})
                email = str(body.get("email", "")).lower()
                with USERS_LOCK:
                    users = load_users()
                    if users and not signup:
                        log(f"POST /api/v1/auths/signup email={email} refused: sign-up is off")
                        return self.answer(403, {"detail": "You do not have permission to access this resource."})
                    role = "admin" if not users else "pending"
                    add_user(users, email, str(body.get("password", "")), role)
                    if role == "admin":
                        signup = False
                log(f"POST /api/v1/auths/signup email={email} made {role}")
                return self.answer(200, {"token": token_for(email), "email": email, "role": role})
            if path == "/api/chat/completions":
                user = self.user()
                if user is None:
                    log("POST /api/chat/completions refused: not signed in")
                    return self.answer(401, {"detail": "Not authenticated"})
                if not isinstance(body, dict):
                    return self.answer(422, {"detail": "a chat completion request expected"})
                code, answer = self.llm("POST", "/chat/completions", body)
                log(f"POST /api/chat/completions user={user['email']} model={body.get('model')} llm={code}")
                return self.answer(code, answer)
            log(f"POST {path} unknown")
            self.answer(404, {"detail": "Not Found"})

    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()


if __name__ == "__main__":
    main()
