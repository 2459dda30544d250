#!/usr/bin/python3
"""A misbehaving OpenAI-compatible chat server for ftk's tests (loopback only).

It answers POST /v1/chat/completions (and any other POST path) deterministically
from the request, and on a configurable share of requests it misbehaves instead:
it sleeps past the client's timeout, answers 429 with Retry-After, answers 500
or 503, sends malformed JSON with status 200, drops the connection before
answering, or drops it in the middle of the body.

Which requests misbehave is decided from a hash of the request body and of how
many times that same body was seen before, so a run is reproducible and a
retried request can succeed: a body is never faulted more than --max-faults
times in a row.  A request body may also carry its own script as a top-level
"faults" list ("timeout", "429", "500", "503", "malformed", "drop", "partial",
"slow" (answered after 0.3 s), "ok", or "status:NNN"), applied by the count of earlier requests with the same
body; the unit tests of lib/http use that.

Answers: --answers FILE (JSONL of {"equals": "<the last user message>" or
"match": "<text in it>", "content": "...", "tool_calls": [...],
"finish_reason": "..."}); the first entry that fits the last user message wins.
"contents": [...] instead of "content" picks one by the request's "seed";
"delay": S makes that answer take S seconds.  "status": N (with
"error_message") answers that HTTP status with an OpenAI error body instead;
"content_raw_hex" puts those bytes verbatim between the quotes of the
content string in the body (invalid UTF-8, escapes a JSON writer would not
make).  Without a match the reply is "echo: <last user message>".  With
--models, a request for another model is answered 404.

Every request is logged to --log as one JSON line ({"n", "body_sha", "seen",
"fault", "auth", "tag", "inflight"}, tag being the body's own "tag" member if
any, inflight the number of requests being answered when it arrived), so tests count what was asked server-side.  "auth" is
whether the Authorization header matched --require-key-env's value (the key
itself is never logged).

The server binds 127.0.0.1 on a free port (written to --port-file) and stops
by itself after --idle seconds without a request or --lifetime seconds in all.
Standard library only: run it with Debian's /usr/bin/python3.
"""
import argparse
import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import time


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log")
    p.add_argument("--answers")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--faults", default="timeout,429,500,malformed,drop,partial")
    p.add_argument("--max-faults", type=int, default=2)
    p.add_argument("--sleep", type=float, default=2.0, help="seconds a timeout fault sleeps")
    p.add_argument("--retry-after", default="1")
    p.add_argument("--delay", type=float, default=0.0, help="seconds every answer waits")
    p.add_argument("--require-key-env")
    p.add_argument("--models", help="comma-separated model names served (default: any)")
    p.add_argument("--idle", type=float, default=20.0)
    p.add_argument("--lifetime", type=float, default=120.0)
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()
SEEN = {}
COUNT = [0]
LAST = [time.monotonic()]
INFLIGHT = [0]
START = time.monotonic()
ANSWERS = []
if ARGS.answers:
    with open(ARGS.answers, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ANSWERS.append(json.loads(line))
KEY = os.environ.get(ARGS.require_key_env) if ARGS.require_key_env else None
LOG = open(ARGS.log, "a", encoding="utf-8") if ARGS.log else None


def choose_fault(body, seen, req):
    script = req.get("faults") if isinstance(req, dict) else None
    if isinstance(script, list):
        return script[seen] if seen < len(script) and script[seen] != "ok" else None
    if ARGS.fault_rate <= 0 or seen >= ARGS.max_faults:
        return None
    h = hashlib.sha256(body + b"#" + str(seen).encode()).hexdigest()
    if int(h[:8], 16) % 10000 >= ARGS.fault_rate * 10000:
        return None
    kinds = [k for k in ARGS.faults.split(",") if k]
    return kinds[int(h[8:16], 16) % len(kinds)]


def last_user(req):
    for m in reversed(req.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            return c if isinstance(c, str) else ""
    return ""


def scripted(req):
    """The answers-file entry for this request, or None."""
    q = last_user(req)
    for a in ANSWERS:
        if ("equals" in a and a["equals"] == q) or ("equals" not in a and a.get("match", "") in q):
            return a
    return None


def answer(req):
    q = last_user(req)
    msg = {"role": "assistant", "content": "echo: " + q}
    finish = "stop"
    for a in ANSWERS:
        if ("equals" in a and a["equals"] == q) or ("equals" not in a and a.get("match", "") in q):
            if a.get("delay"):
                time.sleep(float(a["delay"]))
            content = a.get("content")
            if isinstance(a.get("contents"), list):  # one per request seed, to make votes differ
                content = a["contents"][int(req.get("seed") or 0) % len(a["contents"])]
            msg = {"role": "assistant", "content": content}
            if a.get("tool_calls"):
                msg["tool_calls"] = a["tool_calls"]
            finish = a.get("finish_reason", "tool_calls" if a.get("tool_calls") else "stop")
            break
    words_in = sum(len(str(m.get("content") or "").split()) for m in req.get("messages") or []
                   if isinstance(m, dict))
    words_out = len(str(msg.get("content") or "").split())
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": req.get("model", ""),
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        "usage": {"prompt_tokens": words_in, "completion_tokens": words_out,
                  "total_tokens": words_in + words_out},
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, *a):
        pass

    def send_json(self, status, payload, extra=()):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        with LOCK:
            INFLIGHT[0] += 1
            inflight = INFLIGHT[0]
        try:
            self.answer_post(inflight)
        finally:
            with LOCK:
                INFLIGHT[0] -= 1

    def answer_post(self, inflight):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        auth = None
        if KEY is not None:
            auth = self.headers.get("Authorization") == "Bearer " + KEY
        with LOCK:
            LAST[0] = time.monotonic()
            sha = hashlib.sha256(body).hexdigest()[:16]
            seen = SEEN.get(sha, 0)
            SEEN[sha] = seen + 1
            COUNT[0] += 1
            fault = choose_fault(body, seen, req)
            if LOG:
                tag = req.get("tag") if isinstance(req, dict) else None
                LOG.write(json.dumps({"n": COUNT[0], "body_sha": sha, "seen": seen,
                                      "fault": fault, "auth": auth, "tag": tag,
                                      "inflight": inflight}) + "\n")
                LOG.flush()
        if ARGS.delay > 0:
            time.sleep(ARGS.delay)
        if KEY is not None and not auth:
            self.send_json(401, {"error": {"message": "bad key"}})
            return
        if req is None:
            self.send_json(400, {"error": {"message": "request is not JSON"}})
            return
        if ARGS.models and req.get("model") not in ARGS.models.split(","):
            self.send_json(404, {"error": {"message": "the model '%s' does not exist" % req.get("model"),
                                           "type": "invalid_request_error", "code": "model_not_found"}})
            return
        entry = scripted(req)
        if entry and entry.get("status"):
            self.send_json(int(entry["status"]), {"error": {"message": entry.get("error_message", ""),
                                                            "type": "invalid_request_error"}})
            return
        if entry and "content_raw_hex" in entry:
            resp = answer(req)
            resp["choices"][0]["message"]["content"] = "@@RAW@@"
            data = json.dumps(resp).encode().replace(b"@@RAW@@", bytes.fromhex(entry["content_raw_hex"]))
            self.send_json(200, data)
            return
        if fault == "timeout":
            time.sleep(ARGS.sleep)
        elif fault == "slow":  # answered, after 0.3 s
            time.sleep(0.3)
        elif fault == "429":
            self.send_json(429, {"error": {"message": "slow down"}},
                           [("Retry-After", ARGS.retry_after)])
            return
        elif fault in ("500", "503"):
            self.send_json(int(fault), {"error": {"message": "server error"}},
                           [("Retry-After", ARGS.retry_after)] if fault == "503" else ())
            return
        elif fault and fault.startswith("status:"):
            self.send_json(int(fault[7:]), {"error": {"message": "scripted status"}})
            return
        elif fault == "malformed":
            self.send_json(200, b'{"id":"chatcmpl-test","choices":[{"message":{"content":"tru')
            return
        elif fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        elif fault == "partial":
            data = json.dumps(answer(req)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_json(200, answer(req))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops connects from -j 8 clients

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left is expected here


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.port_file)

    def watchdog():
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            if now - LAST[0] > ARGS.idle or now - START > ARGS.lifetime:
                srv.shutdown()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    srv.serve_forever(poll_interval=0.1)
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
