#!/bin/sh
# ftk-validate against jq on the same file, measured in the same run.
#
# Builds a JSONL file of at least $MB megabytes (default 200) from the bundled
# LLaMA-Factory samples, converted to canonical chat records (so validate does
# all of its checks), then times, one thread each:
#   ftk-validate FILE > /dev/null
#   jq -c . FILE > /dev/null
# and prints MB/s of both and the ratio.  Target: ftk-validate >= 3x jq.
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
MB=${MB:-200}
work=${TMPDIR:-/tmp}/ftk-bench-validate
mkdir -p "$work"
data="$work/data.jsonl"
if [ ! -f "$data" ] || [ $(($(stat -c %s "$data") / 1000000)) -lt "$MB" ]; then
	seed="$work/seed.jsonl"
	: > "$seed"
	for f in datasets/llama_factory/*.json datasets/llama_factory/*.jsonl; do
		case $f in *dataset_info*) continue ;; esac
		"$BIN/ftk-convert" -q "$f" >> "$seed" || true
	done
	: > "$data"
	while [ $(($(stat -c %s "$data") / 1000000)) -lt "$MB" ]; do
		cat "$seed" >> "$data"
	done
fi
size=$(stat -c %s "$data")
best() { # best of 3 wall-clock seconds of a command
	b=""
	for i in 1 2 3; do
		s=$(date +%s.%N); "$@" > /dev/null 2>&1 || true; e=$(date +%s.%N)
		t=$(echo "$e - $s" | bc -l)
		if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
	done
	echo "$b"
}
t_ftk=$(best "$BIN/ftk-validate" -q "$data")
t_jq=$(best jq -c . "$data")
mbs() { echo "scale=1; $size / 1000000 / $1" | bc -l; }
echo "file: $data ($((size / 1000000)) MB, $(wc -l < "$data") records)"
echo "ftk-validate: $(mbs "$t_ftk") MB/s ($t_ftk s)"
echo "jq -c .:      $(mbs "$t_jq") MB/s ($t_jq s)"
echo "ratio ftk-validate / jq: $(echo "scale=2; $t_jq / $t_ftk" | bc -l)x (target >= 3x)"
