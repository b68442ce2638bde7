#!/usr/bin/env python3
"""A stand-in for the OpenAI-compatible LLM server IMAGE's services call
(vLLM, Ollama or a hosted one: not reachable from the tests), on the machine.

Usage: llm-standin.py LISTEN PORT KEY_FILE MODEL...
   or: llm-standin.py --model MODEL [vLLM's options]   (as vLLM's image runs)
   or: llm-standin.py serve | list                     (as Ollama's /bin/ollama)

The second form is the entry point of the test registry's stand-in for
vLLM's image (vllm/vllm-openai): the options vLLM's OpenAI server takes
(--model, --served-model-name, --host, --port, --gpu-memory-utilization,
--max-model-len, --limit-mm-per-prompt; any other is refused, as an unknown
option is by vLLM), the key from VLLM_API_KEY (required here), and GET
/health as vLLM answers it.

The third form is the test registry's stand-in for Ollama's image
(ollama/ollama): `serve` listens on OLLAMA_HOST (the image sets
0.0.0.0:11434), refuses settings Ollama would not parse
(OLLAMA_CONTEXT_LENGTH, OLLAMA_NUM_PARALLEL, OLLAMA_MAX_LOADED_MODELS:
integers; OLLAMA_KEEP_ALIVE: a duration or seconds) and logs them; it checks
no key, as Ollama does not (requests are logged auth=unchecked). Its models
are those pulled, kept under /root/.ollama/models (the compose file's
volume; OLLAMA_MODELS moves them, as it does Ollama's), and
it serves Ollama's own API as well:
- GET /api/tags: the pulled models ({"models": [{"name": ...}]});
- POST /api/pull {"model": NAME}: streamed JSON lines as Ollama sends them
  (pulling manifest, each layer's progress with digest/total/completed,
  verifying sha256 digest, writing manifest, success); a name not in its
  library (qwen2.5vl:3b/7b/32b/72b) gets {"error": ...} in the stream;
- POST /api/generate {"model": NAME} with no prompt: loads a pulled model
  ({"done": true, "done_reason": "load"}); 404 for one not pulled;
- GET /: "Ollama is running".
As Ollama's OpenAI layer, a chat's images must be base64 data URLs of PNG,
JPEG or WebP (400 "invalid image input" otherwise; an http URL is refused).
`list` asks the server on 127.0.0.1 for its models (the compose file's
health check), exit 1 when it does not answer.

Serves, for requests carrying "Authorization: Bearer KEY" (KEY the content
of KEY_FILE, so it is never on a command line; 401 with an OpenAI error body
otherwise), as vLLM does:
- GET /v1/models, the OpenAI API's model list: {"object": "list", "data":
  [{"id": MODEL, ...}]};
- POST /v1/chat/completions for one of the MODELs (404 for another), with a
  fixed answer: with a json_schema response format (IMAGE's content
  categoriser asks one) a JSON object of categories, else one sentence (its
  graphic caption).
Anything else is answered 404 and logged as unknown. Each request is logged
on stderr as "METHOD PATH auth=ok|wrong|missing ..." (never the key).
"""

import argparse
import hashlib
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


LOG_LOCK = threading.Lock()


def log(line):
    """One locked write per line: print() writes the text and its newline
    apart, so two request threads logging at once could splice their lines
    (a test reads this log line by line)."""
    with LOG_LOCK:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def vllm_options(argv):
    p = argparse.ArgumentParser(prog="vllm (test stand-in)")
    p.add_argument("--model", required=True)
    p.add_argument("--served-model-name")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--gpu-memory-utilization", type=float, required=True)
    p.add_argument("--max-model-len", type=int, required=True)
    p.add_argument("--limit-mm-per-prompt", type=json.loads, required=True)
    o = p.parse_args(argv)
    if not 0 < o.gpu_memory_utilization <= 1:
        p.error("--gpu-memory-utilization must be in (0, 1]")
    key = os.environ.get("VLLM_API_KEY", "")
    if not key:
        p.error("VLLM_API_KEY is not set (image-provision's compose file always sets it)")
    log("vllm (test stand-in): " + " ".join(argv))
    return o.host, o.port, key, [o.served_model_name or o.model]


# Ollama's library, as far as the tests pull from it: a name and its
# layers' sizes (the model, the vision projector, the template...).
OLLAMA_LIBRARY = {
    "qwen2.5vl:3b": [3_200_000, 1_000, 500],
    "qwen2.5vl:7b": [6_000_000, 1_000, 500],
    "qwen2.5vl:32b": [21_000_000, 1_000, 500],
    "qwen2.5vl:72b": [49_000_000, 1_000, 500],
}
# Where Ollama keeps its models (OLLAMA_MODELS, as Ollama reads it).
OLLAMA_MODELS = os.environ.get("OLLAMA_MODELS", "/root/.ollama/models") + "/standin-models.json"


def ollama_pulled():
    try:
        with open(OLLAMA_MODELS) as f:
            return json.load(f)
    except FileNotFoundError:
        return []


def ollama_options():
    bad = []
    for name in ["OLLAMA_CONTEXT_LENGTH", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS"]:
        value = os.environ.get(name)
        if value is not None and not value.isdigit():
            bad.append(f"{name}={value!r} is not a number")
    keep = os.environ.get("OLLAMA_KEEP_ALIVE")
    if keep is not None and not (keep.lstrip("-").isdigit() or keep[-1:] in "smh" and keep[:-1].lstrip("-").isdigit()):
        bad.append(f"OLLAMA_KEEP_ALIVE={keep!r} is not a duration")
    if bad:
        sys.exit("ollama (test stand-in): " + "; ".join(bad))
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    settings = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("OLLAMA_"))
    log("ollama (test stand-in): serve " + settings)
    return host, int(port)


def ollama_list():
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:11434/api/tags", timeout=5) as r:
            models = json.load(r)["models"]
    except OSError as e:
        sys.exit(f"Error: could not connect to ollama server: {e}")
    print("NAME")
    for m in models:
        print(m["name"])


def main():
    ollama = len(sys.argv) > 1 and sys.argv[1] in ("serve", "list")
    if ollama and sys.argv[1] == "list":
        return ollama_list()
    if ollama:
        listen, port = ollama_options()
        key, models = None, None
    elif len(sys.argv) > 1 and sys.argv[1].startswith("--"):
        listen, port, key, models = vllm_options(sys.argv[1:])
    else:
        listen, port, key_file, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
        with open(key_file) as f:
            key = f.read().strip()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def served(self):
            return ollama_pulled() if ollama else models

        def auth(self):
            if key is None:
                return "unchecked"
            given = self.headers.get("Authorization")
            if given is None:
                return "missing"
            return "ok" if given == "Bearer " + key else "wrong"

        def answer(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def stream(self, lines):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            for line in lines:
                self.wfile.write((json.dumps(line) + "\n").encode())
                self.wfile.flush()

        def ollama_get(self):
            if self.path == "/":
                log("GET /")
                data = b"Ollama is running"
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return self.wfile.write(data)
            log("GET /api/tags")
            tags = [{"name": m, "model": m, "size": sum(OLLAMA_LIBRARY[m])} for m in ollama_pulled()]
            self.answer(200, {"models": tags})

        def ollama_post(self, body):
            model = body.get("model") or body.get("name")
            if self.path == "/api/pull":
                log(f"POST /api/pull model={model}")
                if model not in OLLAMA_LIBRARY:
                    return self.stream([{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}])
                lines = [{"status": "pulling manifest"}]
                for i, total in enumerate(OLLAMA_LIBRARY[model]):
                    digest = "sha256:" + hashlib.sha256(f"{model} {i}".encode()).hexdigest()
                    for done in range(0, 5):
                        lines.append({"status": "pulling " + digest[7:19], "digest": digest, "total": total, "completed": total * done // 4})
                lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
                if model not in ollama_pulled():
                    os.makedirs(os.path.dirname(OLLAMA_MODELS), exist_ok=True)
                    with open(OLLAMA_MODELS + ".tmp", "w") as f:
                        json.dump(ollama_pulled() + [model], f)
                    os.replace(OLLAMA_MODELS + ".tmp", OLLAMA_MODELS)
                return self.stream(lines)
            # Only a load (no prompt): the tool's; anything else is unknown.
            log(f"POST /api/generate model={model} prompt={'yes' if body.get('prompt') else 'no'}")
            if body.get("prompt") or body.get("messages"):
                return self.answer(400, {"error": "the stand-in only loads models"})
            if model not in ollama_pulled():
                return self.answer(404, {"error": f"model '{model}' not found"})
            self.answer(200, {"model": model, "response": "", "done": True, "done_reason": "load"})

        def do_GET(self):
            if self.path == "/health" and not ollama:
                return self.answer(200, {})
            if ollama and self.path in ("/", "/api/tags"):
                return self.ollama_get()
            auth = self.auth()
            known = self.path.rstrip("/") == "/v1/models"
            log(f"GET {self.path} auth={auth}{'' if known else ' unknown'}")
            if not known:
                self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            elif auth not in ("ok", "unchecked"):
                self.answer(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
            else:
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "image-provision-tests"} for m in self.served()]
                self.answer(200, {"object": "list", "data": data})

        def do_POST(self):
            auth = self.auth()
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            except ValueError:
                body = None
            if ollama and self.path in ("/api/pull", "/api/generate") and isinstance(body, dict):
                return self.ollama_post(body)
            if self.path.rstrip("/") != "/v1/chat/completions" or not isinstance(body, dict):
                log(f"POST {self.path} auth={auth} unknown")
                return self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            model = body.get("model")
            content = (body.get("messages") or [{}])[-1].get("content")
            urls = [part.get("image_url") for part in content if part.get("type") == "image_url"] if isinstance(content, list) else []
            urls = [u.get("url") if isinstance(u, dict) else u for u in urls]
            image = bool(urls)
            wants_json = (body.get("response_format") or {}).get("type") == "json_schema"
            log(
                f"POST /v1/chat/completions auth={auth} model={model} image={'yes' if image else 'no'} "
                f"json={'yes' if wants_json else 'no'}"
            )
            if auth not in ("ok", "unchecked"):
                return self.answer(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
            if ollama and not all(
                isinstance(u, str) and re.match(r"data:(image/(png|jpeg|jpg|webp))?;base64,", u) for u in urls
            ):
                return self.answer(400, {"error": {"message": "invalid image input", "type": "invalid_request_error"}})
            if model not in self.served():
                return self.answer(404, {"error": {"message": f"model {model} does not exist", "type": "not_found"}})
            if wants_json:
                categories = ["photo", "diagram", "multistage_diagram", "contains_text", "collage", "chart_or_graph"]
                answer = json.dumps({"categories": {**{c: False for c in categories}, "illustration": True}})
            else:
                answer = "A small square of a single colour."
            choice = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            self.answer(200, {"id": "chatcmpl-test", "object": "chat.completion", "model": model, "choices": [choice]})

    ThreadingHTTPServer((listen, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
