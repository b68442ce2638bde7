"""image-provision test stand-in for an IMAGE service, run by every stand-in
image the test registry serves (tests/testhost/registry/oci-images.py), as
the service named by STANDIN_SERVICE (the image's name) would behave where
the tests can see it:

- every service: GET /health (200, unless STANDIN_HEALTH=never: a fault a
  test injects through an env file the service reads), GET /warmup;
- the orchestrator (image-orchestrator): POST /render/preprocess, as IMAGE's
  orchestrator does it: the request checked (400 with the errors when a
  required field is missing or malformed), the preprocessors found on each
  request by their container labels through Docker's socket
  (ca.mcgill.a11y.image.preprocessor = priority group, .port, default 80),
  called at http://SERVICE:PORT/preprocessor with the request, a group at a
  time in priority order, the group's members at once (PARALLEL_PREPROCESSORS
  =ON, as IMAGE's compose file sets it), each within PREPROCESSOR_TIMEOUT
  (milliseconds; 15000 when unset, as IMAGE's orchestrator has it), a 200
  answer kept under its `name`, 204 and failures skipped; the answer is the
  request with `preprocessors`. Its cache behaves as IMAGE's memcached one:
  a preprocessor whose ca.mcgill.a11y.image.cacheTimeout label is above 0
  has its 200 answers kept that many seconds, keyed by the request's graphic
  (the whole data URL) and the preprocessor's service name, and a request
  with that graphic gets the kept answer without the preprocessor being
  called (nothing in a request skips it);
- content-categoriser and graphic-caption: POST /preprocessor asks the LLM
  (LLM_URL/chat/completions, LLM_API_KEY, LLM_MODEL, the graphic as an
  image_url; JSON output for the categoriser), as IMAGE's LLM client does,
  and answers with their ids and outputs; 500 when the LLM does not answer;
- any other preprocessor: 204 (nothing to say about this graphic).

Those that need the LLM exit at start-up without LLM_API_KEY, and the OCR
preprocessor when AZURE_API_KEY or FREEOCR_API_KEY is not in its environment
(the image's entry script does that, as the real ones do).
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE = os.environ.get("STANDIN_SERVICE", "")
PORT = int(os.environ.get("STANDIN_PORT", "80"))
HEALTHY = os.environ.get("STANDIN_HEALTH") != "never"
PREPROCESSOR_TIMEOUT = int(os.environ.get("PREPROCESSOR_TIMEOUT") or "15000") / 1000

# The orchestrator's cache: key -> (expires, name, data).
CACHE = {}
CACHE_LOCK = threading.Lock()

CATEGORISER = "ca.mcgill.a11y.image.preprocessor.contentCategoriser"
CAPTION = "ca.mcgill.a11y.image.preprocessor.graphic-caption"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
GRAPHIC = re.compile(r"^data:image/[^;]+;base64,[a-zA-Z0-9+/=]+$")


LOG_LOCK = threading.Lock()


def log(msg):
    # One locked write per line: print() writes the text and its newline
    # apart, so two request threads logging at once could splice their lines.
    with LOG_LOCK:
        sys.stderr.write(f"{SERVICE} (test stand-in): {msg}\n")
        sys.stderr.flush()


def request_errors(req):
    """What the request schema's graphic form would refuse, as messages."""
    errors = []
    if not isinstance(req, dict):
        return ["the request is not a JSON object"]
    for key in ["request_uuid", "timestamp", "graphic", "dimensions", "context", "language", "capabilities", "renderers"]:
        if key not in req:
            errors.append(f"must have required property '{key}'")
    if "request_uuid" in req and not (isinstance(req["request_uuid"], str) and UUID4.match(req["request_uuid"])):
        errors.append("/request_uuid must be a UUID v4")
    if "timestamp" in req and not (isinstance(req["timestamp"], int) and req["timestamp"] >= 0):
        errors.append("/timestamp must be a non-negative integer")
    if "graphic" in req and not (isinstance(req["graphic"], str) and GRAPHIC.match(req["graphic"])):
        errors.append("/graphic must be a data:image/...;base64, URL")
    dims = req.get("dimensions")
    if "dimensions" in req and not (
        isinstance(dims, list) and len(dims) == 2 and all(isinstance(d, int) and d > 0 for d in dims)
    ):
        errors.append("/dimensions must be two positive integers")
    if "language" in req and not (isinstance(req["language"], str) and len(req["language"]) == 2):
        errors.append("/language must be 2 characters")
    return errors


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def preprocessors():
    """(priority, service, port, cache seconds) of each container labelled a
    preprocessor."""
    conn = UnixHTTPConnection("/var/run/docker.sock")
    conn.request("GET", "/containers/json")
    containers = json.loads(conn.getresponse().read())
    found = []
    for c in containers:
        labels = c.get("Labels") or {}
        if "ca.mcgill.a11y.image.preprocessor" not in labels:
            continue
        try:
            priority = int(labels["ca.mcgill.a11y.image.preprocessor"])
        except ValueError:
            continue
        port = labels.get("ca.mcgill.a11y.image.port", "80")
        port = int(port) if port.isdigit() else 80
        try:
            cache = int(labels.get("ca.mcgill.a11y.image.cacheTimeout", "0"))
        except ValueError:
            cache = 0
        found.append((priority, labels.get("com.docker.compose.service", ""), port, cache))
    return sorted(found)


def cache_key(req, service):
    """As IMAGE's orchestrator keys its cache: the graphic and the
    preprocessor (a hash of both; here sha256 of their JSON)."""
    key = {"reqData": req.get("graphic", ""), "preprocessor": service}
    followup = req.get("followup")
    if isinstance(followup, dict) and followup.get("query"):
        key["followupQuery"] = followup["query"]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def post_json(url, body, headers=None, timeout=PREPROCESSOR_TIMEOUT):
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def run_preprocessor(req, service, port, cache):
    """(name, data) of one preprocessor's answer, from the cache when it
    holds one; None when it has nothing to say or failed."""
    key = cache_key(req, service)
    if cache > 0:
        with CACHE_LOCK:
            hit = CACHE.get(key)
        if hit and hit[0] > time.time():
            log(f"{service}: answered from the cache")
            return hit[1], hit[2]
    url = f"http://{service}:{port}/preprocessor"
    try:
        status, body = post_json(url, req, {"X-Request-ID": req["request_uuid"]})
    except Exception as e:  # a failing preprocessor is skipped, as IMAGE's orchestrator does
        log(f"{url}: {e}")
        return None
    if status == 204:
        return None
    try:
        answer = json.loads(body)
        name, data = answer["name"], answer["data"]
    except (ValueError, KeyError, TypeError) as e:
        log(f"{url}: not a preprocessor response: {e}")
        return None
    if cache > 0:
        with CACHE_LOCK:
            CACHE[key] = (time.time() + cache, name, data)
    return name, data


def render_preprocess(req):
    req = dict(req)
    req.setdefault("preprocessors", {})
    groups = {}
    for priority, service, port, cache in preprocessors():
        groups.setdefault(priority, []).append((service, port, cache))
    for priority in sorted(groups):
        # Each sees the request with the earlier groups' answers.
        seen = dict(req, preprocessors=dict(req["preprocessors"]))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(groups[priority])) as pool:
            answers = list(pool.map(lambda p: run_preprocessor(seen, *p), groups[priority]))
        for answer in answers:
            if answer is not None:
                req["preprocessors"][answer[0]] = answer[1]
    return req


def ask_llm(req, prompt, schema=None):
    body = {
        "model": os.environ["LLM_MODEL"],
        "temperature": 0,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": req["graphic"]}},
                ],
            }
        ],
    }
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response-format", "schema": schema}}
    url = os.environ["LLM_URL"].rstrip("/") + "/chat/completions"
    status, answer = post_json(url, body, {"Authorization": "Bearer " + os.environ["LLM_API_KEY"]}, timeout=60)
    return json.loads(answer)["choices"][0]["message"]["content"]


def preprocess(req):
    """(status, body) of POST /preprocessor for this service."""
    if "graphic" not in req:
        return 204, None
    if SERVICE == "image-preprocessor-content-categoriser":
        schema = {"type": "object", "properties": {"categories": {"type": "object"}}}
        name, data = CATEGORISER, json.loads(ask_llm(req, "Categorise this graphic.", schema))
    elif SERVICE == "image-preprocessor-graphic-caption":
        name, data = CAPTION, {"caption": ask_llm(req, "Describe this graphic in one sentence.").strip()}
    else:
        return 204, None
    return 200, {"request_uuid": req["request_uuid"], "timestamp": int(time.time()), "name": name, "data": data}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        # Not the health checks' requests (every 5 s): they would bury the
        # lines worth reading.
        if not self.path.startswith(("/health", "/warmup")):
            log(fmt % args)

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health" and HEALTHY:
            self.answer(200, {"status": "healthy", "timestamp": int(time.time())})
        elif self.path == "/warmup":
            self.answer(200, {"status": "warm"})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        except ValueError:
            return self.answer(400, [{"message": "the body is not JSON"}])
        try:
            if SERVICE == "image-orchestrator" and self.path == "/render/preprocess":
                errors = request_errors(req)
                return self.answer(400, [{"message": e} for e in errors]) if errors else self.answer(200, render_preprocess(req))
            if self.path == "/preprocessor":
                status, body = preprocess(req)
                return self.answer(status, body)
        except Exception as e:
            log(f"{self.path}: {e}")
            return self.answer(500, {"error": str(e)})
        self.answer(404, {"error": "not found"})


if __name__ == "__main__":
    if not HEALTHY:
        log("loading the model failed (STANDIN_HEALTH=never)")
    log("started")
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
