#!/usr/bin/env python3
"""A stand-in for the OpenAI-compatible LLM server IMAGE's services call
(vLLM, Ollama or a hosted one: not reachable from the tests), on the machine.

Usage: llm-standin.py LISTEN PORT KEY_FILE MODEL...
   or: llm-standin.py --model MODEL [vLLM's options]   (as vLLM's image runs)

The second form is the entry point of the test registry's stand-in for
vLLM's image (vllm/vllm-openai): the options vLLM's OpenAI server takes
(--model, --served-model-name, --host, --port, --gpu-memory-utilization,
--max-model-len, --limit-mm-per-prompt; any other is refused, as an unknown
option is by vLLM), the key from VLLM_API_KEY (required here), and GET
/health as vLLM answers it.

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
import json
import os
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


def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("--"):
        listen, port, key, models = vllm_options(sys.argv[1:])
    else:
        listen, port, key_file, models = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
        with open(key_file) as f:
            key = f.read().strip()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def auth(self):
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

        def do_GET(self):
            if self.path == "/health":
                return self.answer(200, {})
            auth = self.auth()
            known = self.path.rstrip("/") == "/v1/models"
            log(f"GET {self.path} auth={auth}{'' if known else ' unknown'}")
            if not known:
                self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            elif auth != "ok":
                self.answer(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
            else:
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "image-provision-tests"} for m in models]
                self.answer(200, {"object": "list", "data": data})

        def do_POST(self):
            auth = self.auth()
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            except ValueError:
                body = None
            if self.path.rstrip("/") != "/v1/chat/completions" or not isinstance(body, dict):
                log(f"POST {self.path} auth={auth} unknown")
                return self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            model = body.get("model")
            content = (body.get("messages") or [{}])[-1].get("content")
            image = isinstance(content, list) and any(part.get("type") == "image_url" for part in content)
            wants_json = (body.get("response_format") or {}).get("type") == "json_schema"
            log(
                f"POST /v1/chat/completions auth={auth} model={model} image={'yes' if image else 'no'} "
                f"json={'yes' if wants_json else 'no'}"
            )
            if auth != "ok":
                return self.answer(401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}})
            if model not in models:
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
