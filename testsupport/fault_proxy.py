#!/usr/bin/env python3
"""A small HTTP proxy in front of moto's EC2 server that injects the faults
moto cannot produce (InsufficientInstanceCapacity in one zone,
DependencyViolation on DeleteSecurityGroup, RequestLimitExceeded, quota and
permission errors, an account with no default VPC), and the answers of
services moto does not serve (the Price List API).

Two protocols: the query protocol (a form with Action=...: EC2's, and
Elastic Load Balancing's, whose errors have another shape) and AWS's JSON
protocol (X-Amz-Target: Service.Action, a JSON body), as the Price List API
speaks it. For a JSON request the "params" are its top-level string fields
plus each of its Filters as Field: Value, and an injected error is a JSON
{"__type": code, "message": ...}.

Usage: fault_proxy.py PORT UPSTREAM_URL RULES_JSON LOG_FILE

RULES_JSON is a list of rules, read when the proxy starts:
  {"action": "RunInstances",           # the EC2 Action= of the request (or
                                       # the JSON protocol's target's action)
   "when": {"SubnetId": "subnet-1"},   # optional: form parameters that must match
   "times": 1,                         # optional: how many requests to hit (default: all)
   "status": 400,                      # optional, default 400
   "code": "InsufficientInstanceCapacity", "message": "...",   # an EC2 error ...
   "body": "<xml .../>"}               # ... or this body instead (a success;
                                       # JSON for a JSON request)
Every request is logged to LOG_FILE as one JSON line:
  {"action": ..., "injected": code-or-null, "params": {"Name": "value", ...}}
so a test can prove which calls were made, with what (what moto drops, such
as a gp3 volume's Throughput), and that each fault was hit. UserData is left
out of the params: it carries the instance's SSH host private key.
"""
import http.server
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

PORT, UPSTREAM, RULES_PATH, LOG_PATH = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with open(RULES_PATH, encoding="utf-8") as f:
    RULES = json.load(f)
LOCK = threading.Lock()

ERROR_JSON = '{{"__type": {code}, "message": {message}}}'
ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
    "</Error></Errors><RequestID>fault-proxy</RequestID></Response>"
)
# The query protocol's other services (Elastic Load Balancing v2: a form
# with its own Version=) answer errors in this shape, not EC2's.
ERROR_QUERY_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
    "</Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
)
EC2_VERSION = "2016-11-15"


def match(params):
    """The first rule that applies to this request, consuming one of its times."""
    action = params.get("Action", [""])[0]
    with LOCK:
        for rule in RULES:
            if rule.get("action") != action:
                continue
            if any(params.get(k, [None])[0] != v for k, v in rule.get("when", {}).items()):
                continue
            times = rule.get("times")
            if times is not None:
                if times <= 0:
                    continue
                rule["times"] = times - 1
            return action, rule
    return action, None


def json_params(target, body):
    """A JSON-protocol request's params, shaped like parse_qs's: Action from
    the target, the body's string fields, and its Filters as Field: Value."""
    doc = json.loads(body or b"{}")
    params = {"Action": [target.rsplit(".", 1)[-1]]}
    for key, value in doc.items():
        if isinstance(value, str):
            params[key] = [value]
    for f in doc.get("Filters", []):
        params[f.get("Field", "")] = [f.get("Value", "")]
    return params


def logged(params):
    return {k: v[0] for k, v in params.items() if k != "UserData"}


def log(entry):
    with LOCK, open(LOG_PATH, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target")
        if target:
            params = json_params(target, body)
            content_type = "application/x-amz-json-1.1"
        else:
            params = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
            content_type = "text/xml"
        action, rule = match(params)
        if rule is not None:
            if "body" in rule:
                payload = rule["body"].encode()
                injected = "body"
            else:
                message = rule.get("message", rule["code"])
                if target:
                    payload = ERROR_JSON.format(code=json.dumps(rule["code"]), message=json.dumps(message)).encode()
                elif params.get("Version", [EC2_VERSION])[0] == EC2_VERSION:
                    payload = ERROR_XML.format(code=rule["code"], message=message).encode()
                else:
                    payload = ERROR_QUERY_XML.format(code=rule["code"], message=message).encode()
                injected = rule["code"]
            log({"action": action, "injected": injected, "params": logged(params)})
            self.reply(rule.get("status", 200 if "body" in rule else 400), payload, content_type)
            return
        log({"action": action, "injected": None, "params": logged(params)})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(UPSTREAM + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                self.reply(resp.status, resp.read(), resp.headers.get("Content-Type", content_type))
        except urllib.error.HTTPError as e:
            self.reply(e.code, e.read(), e.headers.get("Content-Type", content_type))

    def reply(self, status, payload, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
print("ready", flush=True)
server.serve_forever()
