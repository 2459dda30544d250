#!/bin/sh
# ftk-serve against hostile clients (issue 18.1-18.3), each figure beside a
# baseline measured in the same run:
#
#   idle:   /health latency (median and worst of 20) with N idle half-sent
#           connections open (default 1,100), against the same with none;
#   upload: RSS growth of the server after eight keyless 63 MB bodies sent
#           to a server with --api-key-env, against the growth after eight
#           keyed 1 KB requests (peak RSS, VmHWM, too);
#   prompt: a 60 MB prompt against stories260K's 512-token context (sent
#           with --max-body 64M so it is not refused by size): status,
#           seconds (and the server's CPU seconds, which a loaded machine
#           does not inflate) and RSS growth, against a prompt of 4 tokens;
#   unbounded: the same with a copy of stories260K whose normalizer deletes
#           "#", so no byte bound refuses the prompt first and only stopping
#           the tokenizer at the context keeps it cheap.  Its peak is the
#           parsed prompt plus the normalized text (the body is freed once
#           parsed; the normalizer rewrites the text in place but still
#           goes over all of it before the context can stop the encoding).
#
# Targets (issue 18): /health under 1 s with 1,100 idle connections; under
# 50 MB of growth for the uploads; 400 in under 1 s with under 100 MB of
# growth for the prompt.  Needs python3 (Debian's) and a file-descriptor
# limit above N (raised to the hard limit here).
#
#   sh bench/serve_hostile.sh          (N=2000 to vary the idle connections)
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
N=${N:-1100}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 - "$BIN" "$N" <<'PY'
import json, os, socket, subprocess, sys, tempfile, time
BIN, N = sys.argv[1], int(sys.argv[2])
M = "datasets/models/stories260K"
work = tempfile.mkdtemp(prefix="ftk-bench-serve-")

def start(*extra, env=None, model=None):
    pf = os.path.join(work, "port")
    if os.path.exists(pf):
        os.unlink(pf)
    p = subprocess.Popen([BIN + "/ftk-serve", "-q", "--model", model or M, "--quant", "none", "--port", "0",
                          "--port-file", pf, *extra], stderr=subprocess.DEVNULL,
                         env=dict(os.environ, **(env or {})))
    while not os.path.exists(pf):
        time.sleep(0.05)
    return p, int(open(pf).read())

def rss(p, key="VmRSS"):
    for line in open("/proc/%d/status" % p.pid):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return 0.0

def request(port, method, path, body=b"", headers=(), timeout=60):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n" % (method, path, len(body))
    for h in headers:
        head += h + "\r\n"
    try:
        s.sendall(head.encode() + b"\r\n" + body)
    except (BrokenPipeError, ConnectionResetError):
        pass	# answered and closed before the body was sent (401, 413)
    resp = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except ConnectionResetError:
        pass
    s.close()
    status = resp.split(b" ", 2)[1].decode() if resp else "none"
    return status, resp.split(b"\r\n\r\n", 1)[-1]

def cpu(p):
    f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def health_latency(port, n=20):
    t = []
    for _ in range(n):
        t0 = time.time()
        st, _ = request(port, "GET", "/health", timeout=10)
        t.append((time.time() - t0, st))
    t.sort()
    return t[len(t) // 2][0], t[-1][0], sorted(set(x[1] for x in t))

# stories260K with a normalizer that deletes "#": no bytes-per-token bound
unbounded = os.path.join(work, "unbounded")
os.mkdir(unbounded)
for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"):
    os.symlink(os.path.abspath(os.path.join(M, f)), os.path.join(unbounded, f))
tj = json.load(open(os.path.join(M, "tokenizer.json")))
tj["normalizer"]["normalizers"].insert(0, {"type": "Replace", "pattern": {"String": "#"}, "content": ""})
json.dump(tj, open(os.path.join(unbounded, "tokenizer.json"), "w"))

# ---- idle connections
p, port = start()
med0, worst0, st0 = health_latency(port)
idle = []
for i in range(N):
    s = socket.socket()
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    idle.append(s)
time.sleep(0.5)
med, worst, st = health_latency(port)
print("idle: /health with %d idle connections: median %.4f s, worst %.4f s (statuses %s); "
      "with none: median %.4f s, worst %.4f s; ratio of worst %.1f" %
      (N, med, worst, ",".join(st), med0, worst0, st0 and worst / worst0))
for s in idle:
    s.close()
p.terminate(); p.wait()

# ---- keyless uploads
p, port = start("--api-key-env", "FTK_BENCH_KEY", env={"FTK_BENCH_KEY": "sekret"})
r0 = rss(p)
for _ in range(8):
    request(port, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "Once"}).encode(),
            ["Authorization: Bearer sekret"])
r1 = rss(p)
big = b'{"model":"stories260K","prompt":"' + b"a" * (63 * 1000 * 1000) + b'"}'
sts = []
for _ in range(8):
    st, _ = request(port, "POST", "/v1/completions", big)
    sts.append(st)
time.sleep(0.3)
r2 = rss(p)
print("upload: eight keyless 63 MB bodies: statuses %s, RSS %.1f -> %.1f MB (growth %.1f MB, peak %.1f MB); "
      "eight keyed 1 KB requests grew it %.1f MB" % (",".join(sorted(set(sts))), r1, r2, r2 - r1,
                                                    rss(p, "VmHWM"), r1 - r0))
p.terminate(); p.wait()

# ---- a prompt far over the context
def prompt_case(label, model):
  p, port = start("--max-body", "64M", "--name", "stories260K", model=model)
  st, _ = request(port, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "Once", "max_tokens": 1}).encode())
  r0 = rss(p)
  t0 = time.time()
  st_small, _ = request(port, "POST", "/v1/completions", json.dumps({"model": "stories260K", "prompt": "Once upon a", "max_tokens": 1}).encode())
  t_small = time.time() - t0
  body = json.dumps({"model": "stories260K", "prompt": "Once upon a time " * (60 * 1000 * 1000 // 17)}).encode()
  t0 = time.time()
  c0 = cpu(p)
  st, resp = request(port, "POST", "/v1/completions", body)
  t = time.time() - t0
  c1 = cpu(p)
  time.sleep(0.3)	# the worker drops the request just after the answer is sent
  r1 = rss(p)
  code = json.loads(resp)["error"]["code"] if st != "200" else "-"
  print(label + ": %.0f MB prompt, 512-token context: %s %s in %.3f s (server CPU %.2f s), RSS %.1f -> %.1f MB "
        "(growth %.1f MB, peak %.1f MB); a 4-token prompt: %s in %.3f s; ratio %.1f" %
        (len(body) / 1e6, st, code, t, c1 - c0, r0, r1, r1 - r0, rss(p, "VmHWM"), st_small, t_small, t / t_small))
  p.terminate(); p.wait()
prompt_case("prompt", None)
prompt_case("unbounded", unbounded)
PY
