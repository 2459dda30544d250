#!/bin/sh
# Throughput of ftk-filter --gopher and ftk-scrub next to a grep -P pass over
# the same file, as ratios measured in the same run.
#
#   sh bench/filter.sh [MB]        # default 200; binaries from $FTK_BIN, ./bin or PATH
#
# The input is datasets/llama_factory/c4_demo.jsonl (real web text) repeated
# with variations until it reaches MB megabytes, built in /tmp: each copy
# rotates every document's sentences, numbers the copy, and plants an e-mail
# address, a phone number and an IPv4 address in every fifth document, so
# that copies are not byte-identical and ftk-scrub has something to mask.
# grep -P runs an e-mail pattern over the same bytes (PCRE2 JIT in both).
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
MB=${1:-200}
BIN=${FTK_BIN:-$SRC/bin}
[ -x "$BIN/ftk-filter" ] || BIN=$(dirname "$(command -v ftk-filter)")
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
data=/tmp/ftk-bench-filter-$MB.jsonl
if [ ! -s "$data" ]; then
	$PY - "$SRC/datasets/llama_factory/c4_demo.jsonl" "$data" "$MB" <<'PYEOF'
import json, sys
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [json.loads(l)["text"] for l in open(src, encoding="utf-8")]
out = open(dst, "w", encoding="utf-8")
size, copy = 0, 0
while size < mb * 1000000:
    for i, t in enumerate(docs):
        s = t.split(". ")
        k = copy % len(s)
        t = ". ".join(s[k:] + s[:k])
        if (i + copy) % 5 == 0:
            t += f" Contact jane.doe{copy}@example.com or +1 415 555 {1000 + copy % 9000:04d} from 8.8.{copy % 256}.{i % 256}."
        line = json.dumps({"text": f"[{copy}] " + t}, ensure_ascii=False) + "\n"
        out.write(line)
        size += len(line.encode())
    copy += 1
PYEOF
fi
bytes=$(wc -c < "$data")
now() { date +%s.%N; }
run() { # name, command...
	name=$1; shift
	t0=$(now); "$@" > /dev/null; t1=$(now)
	echo "$name $t0 $t1"
}
echo "input: $data, $bytes bytes, $(wc -l < "$data") records"
{
	run grep grep -cP '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}' "$data"
	run filter "$BIN/ftk-filter" -q --gopher "$data"
	run scrub "$BIN/ftk-scrub" -q "$data"
} | awk -v b="$bytes" '
	{ s[$1] = $3 - $2; order[n++] = $1 }
	END {
		for (i = 0; i < n; i++) {
			k = order[i]
			printf "%-34s %7.2f s %8.1f MB/s   %.2fx grep -P\n", \
				(k == "grep" ? "grep -cP (e-mail pattern)" : k == "filter" ? "ftk-filter --gopher" : "ftk-scrub (all detectors)"), \
				s[k], b / s[k] / 1e6, s["grep"] / s[k]
		}
	}'
