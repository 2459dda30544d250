#!/bin/sh
# ftk-eval's endpoint backend against curl on the same requests, measured in
# the same run.
#
# A loopback test server (tests/eval_server.py) plays a model that takes
# $DELAY seconds per answer (default 0.02).  $N cases (default 400) are asked:
#   ftk-eval run SUITE --endpoint URL -j $J --no-cache   (asks, scores, writes results)
#   curl --parallel --parallel-max $J -K CONFIG          (only asks: the same bodies)
# and, for the concurrency itself, ftk-eval with -j 1.  Prints requests per
# second of each and the ratios.  Target: ftk-eval -j J >= 0.8x curl -P J (the
# client is not the bottleneck), and -j J >= 0.8 J x -j 1.
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
N=${N:-400}
J=${J:-8}
DELAY=${DELAY:-0.02}
work=${TMPDIR:-/tmp}/ftk-bench-eval
rm -rf "$work"
mkdir -p "$work/bodies"
/usr/bin/python3 - "$work" "$N" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
with open(work + "/cases.jsonl", "w") as f:
    for i in range(n):
        msgs = [{"role": "user", "content": "What is %d + %d?" % (i, 2 * i)}]
        f.write(json.dumps({"id": "q%d" % i, "messages": msgs, "expected": {"answer": str(3 * i)}}) + "\n")
        body = {"model": "m", "messages": msgs, "max_tokens": 16}
        with open("%s/bodies/%d.json" % (work, i), "w") as b:
            b.write(json.dumps(body))
with open(work + "/suite.json", "w") as f:
    json.dump({"cases": "cases.jsonl", "judges": [{"judge": "match", "settings": {"mode": "contains"}}],
               "generation": {"max_tokens": 16}}, f)
PY
/usr/bin/python3 tests/eval_server.py --port-file "$work/port" --delay "$DELAY" --idle 30 --lifetime 600 &
srv=$!
trap 'kill $srv 2>/dev/null' EXIT
i=0
while [ ! -s "$work/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
url=http://127.0.0.1:$(cat "$work/port")/v1/chat/completions
export no_proxy=127.0.0.1 NO_PROXY=127.0.0.1
secs() { s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
t_ftk=$(secs "$BIN/ftk-eval" run "$work/suite.json" -o "$work/run-j$J" --endpoint "$url" --model m -j "$J" --no-cache -q)
t_one=$(secs "$BIN/ftk-eval" run "$work/suite.json" -o "$work/run-j1" --endpoint "$url" --model m -j 1 --no-cache -q)
# one curl process with --parallel: a request per body, J at once
: > "$work/curl.cfg"
sep=""
for b in "$work"/bodies/*.json; do
	printf '%surl = "%s"\nheader = "Content-Type: application/json"\ndata-binary = "@%s"\noutput = "/dev/null"\n' "$sep" "$url" "$b" >> "$work/curl.cfg"
	sep="next
"
done
t_curl=$(secs curl -s --parallel --parallel-max "$J" -K "$work/curl.cfg")
n_ok=$(jq -c 'select(.error == null)' "$work/run-j$J/results.jsonl" | wc -l)
printf 'requests        %d (server delay %s s), %d answered and scored by ftk-eval\n' "$N" "$DELAY" "$n_ok"
printf 'ftk-eval -j %-3d %8.1f req/s\n' "$J" "$(echo "$N / $t_ftk" | bc -l)"
printf 'ftk-eval -j 1   %8.1f req/s\n' "$(echo "$N / $t_one" | bc -l)"
printf 'curl -Z max %-3d %8.1f req/s\n' "$J" "$(echo "$N / $t_curl" | bc -l)"
printf 'ratio ftk-eval/curl at %d in flight: %.2f (target >= 0.8)\n' "$J" "$(echo "$t_curl / $t_ftk" | bc -l)"
printf 'speedup -j %d over -j 1: %.2f (target >= %.1f)\n' "$J" "$(echo "$t_one / $t_ftk" | bc -l)" "$(echo "0.8 * $J" | bc -l)"
