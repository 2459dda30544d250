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
echo "input: $data, $bytes bytes, $(wc -l < "$data") records"
echo "(the machine is shared: CPU seconds are steadier than wall seconds; both shown)"
tmp=$(mktemp -d /tmp/ftk-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cat "$data" > /dev/null # into the page cache for everyone
run() { # label, command...
	label=$1; shift
	# not /dev/null: GNU grep stops at the first match when its output is /dev/null
	/usr/bin/time -f "%e %U %S" -o "$tmp/t" "$@" > "$tmp/out" || true
	echo "$label|$(cat "$tmp/t")"
}
{
	run "grep -cP e-mail pattern" grep -cP \
		'[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}' "$data"
	run "grep -cP phone pattern" grep -cP \
		'(?<![0-9])(?:\+?1[ .-]?)?\(?[2-9][0-9]{2}\)?[ .-][2-9][0-9]{2}[ .-][0-9]{4}(?![0-9])' "$data"
	run "ftk-filter --gopher" "$BIN/ftk-filter" -q --gopher "$data"
	run "ftk-scrub" "$BIN/ftk-scrub" -q "$data"
} | awk -F'|' -v b="$bytes" 'BEGIN { n = 0 }
	{ split($2, t, " "); lab[n] = $1; wall[n] = t[1]; cpu[n] = t[2] + t[3]; n++ }
	END {
		printf "%-26s %8s %9s %8s %9s   %s\n", "", "wall s", "MB/s", "cpu s", "MB/s", "cpu-time ratio to each grep -P"
		for (i = 0; i < n; i++) {
			c = cpu[i] > 0.005 ? cpu[i] : 0.005
			w = wall[i] > 0.005 ? wall[i] : 0.005
			r = ""
			if (i >= 2)
				r = sprintf("%.3fx e-mail grep, %.3fx phone grep", \
					(cpu[0] > 0.005 ? cpu[0] : 0.005) / c, (cpu[1] > 0.005 ? cpu[1] : 0.005) / c)
			printf "%-26s %8.2f %9.1f %8.2f %9.1f   %s\n", lab[i], wall[i], b / w / 1e6, cpu[i], b / c / 1e6, r
		}
	}'
