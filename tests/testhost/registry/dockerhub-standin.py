#!/usr/bin/env python3
"""A stand-in for Docker Hub's registry (registry-1.docker.io: not reachable
from the tests) in front of the test registry, on the machine.

Usage: dockerhub-standin.py LISTEN PORT CERT KEY CA BACKEND ACCOUNT_FILE ANONYMOUS_PULLS

Serves HTTPS on LISTEN:PORT with CERT/KEY (for ghcr.io and
registry-1.docker.io, the names the booted host's /etc/hosts gives this
address). A request for ghcr.io (its Host header) passes through to BACKEND
(https://ADDR:PORT, the real test registry, whose certificate CA signs)
untouched. A request for Docker Hub is answered as Docker Hub answers it,
where image-provision depends on it:
- token authentication: /v2/ and any /v2/... without a token get 401 with
  `WWW-Authenticate: Bearer realm="https://registry-1.docker.io/token",
  service="registry.docker.io"`; /token gives an anonymous token, or,
  with credentials (GET with Basic, or POST with OAuth2's password grant),
  the account's token when they are ACCOUNT_FILE's
  "USER:TOKEN" (read from a file, so never on a command line), else 401
  "incorrect username or password" (what `docker login` reports);
- the pull limit: a manifest request (GET or HEAD) with an anonymous token
  beyond the first ANONYMOUS_PULLS is answered 429 with Docker Hub's body
  (code TOOMANYREQUESTS, "You have reached your pull rate limit..."); the
  account's are not limited; blobs are not counted (Docker Hub counts
  manifests);
- everything else under /v2/ with a valid token passes through to BACKEND.
Anything else is 404 and logged as unknown. Each request is logged on
stderr as "HOST METHOD PATH auth=none|anonymous|account|wrong -> STATUS"
(never a credential).
"""

import base64
import http.client
import json
import secrets
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOG_LOCK = threading.Lock()
HUB = "registry-1.docker.io"
LIMIT_BODY = {
    "errors": [
        {
            "code": "TOOMANYREQUESTS",
            "message": "You have reached your pull rate limit. You may increase the limit by authenticating "
            "and upgrading: https://www.docker.com/increase-rate-limit",
        }
    ]
}


def log(line):
    """One locked write per line (two request threads never splice)."""
    with LOG_LOCK:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class Backend(http.client.HTTPSConnection):
    """The real registry at its address, its certificate checked for the
    name it carries (ghcr.io), as dockerd checks it."""

    def __init__(self, address, port, context):
        super().__init__("ghcr.io", port, context=context, timeout=60)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname="ghcr.io")


class State:
    def __init__(self, backend, ca, account, anonymous_pulls):
        self.backend = urlsplit(backend)
        self.context = ssl.create_default_context(cafile=ca)
        self.account = account
        self.anonymous_left = anonymous_pulls
        self.tokens = {}  # token -> "anonymous" | "account"
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=(), kind="application/json"):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def proxy(self):
        s = self.state
        conn = Backend(s.backend.hostname, s.backend.port, s.context)
        # Every value of a repeated header (dockerd sends one Accept line a
        # media type), joined as HTTP allows.
        headers = {}
        for k in set(self.headers.keys()):
            if k.lower() not in ("authorization", "connection"):
                headers[k] = ", ".join(self.headers.get_all(k))
        headers["Host"] = "ghcr.io"
        conn.request(self.command, self.path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        conn.close()
        return r.status

    def hub(self):
        s = self.state
        auth = self.headers.get("Authorization", "")
        path = urlsplit(self.path).path
        if path == "/token":
            given = None
            if self.command == "POST":
                # OAuth2's password grant, as Docker asks with a refresh
                # token or when told to.
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if "username" in form:
                    given = "%s:%s" % (form["username"][0], form.get("password", [""])[0])
            elif auth.startswith("Basic "):
                try:
                    given = base64.b64decode(auth.split(" ", 1)[1]).decode()
                except Exception:
                    given = ""
            elif auth:
                given = ""
            if given is None:
                token, who = "anon-" + secrets.token_hex(8), "anonymous"
            else:
                if given == s.account:
                    token, who = "acct-" + secrets.token_hex(8), "account"
                else:
                    body = json.dumps({"details": "incorrect username or password"}).encode()
                    return "wrong", self.answer(401, body)
            with s.lock:
                s.tokens[token] = who
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            return who, self.answer(200, body)
        if not path.startswith("/v2/"):
            return "none", self.answer(404, b'{"errors":[{"code":"NOT_FOUND"}]}')
        who = None
        if auth.startswith("Bearer "):
            with s.lock:
                who = s.tokens.get(auth[len("Bearer "):])
        if who is None:
            challenge = 'Bearer realm="https://%s/token",service="registry.docker.io"' % HUB
            if path != "/v2/":
                challenge += ',scope="repository:%s:pull"' % path[len("/v2/"):].split("/manifests/")[0].split("/blobs/")[0]
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            return "none", self.answer(401, body, [("WWW-Authenticate", challenge)])
        if path == "/v2/":
            return who, self.answer(200, b"{}")
        if "/manifests/" in path and who == "anonymous":
            with s.lock:
                limited = s.anonymous_left <= 0
                s.anonymous_left -= 1
            if limited:
                return who, self.answer(429, json.dumps(LIMIT_BODY).encode())
        return who, self.proxy()

    def handle_any(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        try:
            if host == HUB:
                who, status = self.hub()
            elif host == "ghcr.io":
                who, status = "-", self.proxy()
            else:
                who, status = "-", self.answer(404, b"")
                log("unknown host %r: %s %s" % (host, self.command, self.path))
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as e:  # said, not swallowed: a test reads this log
            log("%s %s %s failed: %r" % (host, self.command, self.path, e))
            raise
        log("%s %s %s auth=%s -> %d" % (host, self.command, urlsplit(self.path).path, who, status))

    do_GET = handle_any
    do_HEAD = handle_any
    do_POST = handle_any


def main():
    if len(sys.argv) != 9:
        sys.exit("usage: dockerhub-standin.py LISTEN PORT CERT KEY CA BACKEND ACCOUNT_FILE ANONYMOUS_PULLS")
    listen, port, cert, key, ca, backend, account_file, anonymous = sys.argv[1:]
    with open(account_file) as f:
        account = f.read().strip()
    Handler.state = State(backend, ca, account, int(anonymous))
    server = ThreadingHTTPServer((listen, int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    log("listening on %s:%s" % (listen, port))
    server.serve_forever()


if __name__ == "__main__":
    main()
