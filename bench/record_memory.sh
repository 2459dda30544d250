#!/bin/sh
# bench/record_memory.sh: memory per record (issue 18 item 13).  A record
# of S bytes may take at most 4 S of peak RSS above the tool's baseline;
# beyond --max-record-bytes it is rejected without being held at all.
#
# For each tool: peak RSS (/usr/bin/time -v, "Maximum resident set size")
# on a file of small records (the baseline), then on the same file with one
# chat record of S bytes (a user turn of S bytes of words) added; the ratio
# printed is (peak - baseline) / S.  Python's json.loads of the same line is
# measured in the same run as the reference a reader of the record cannot
# beat by much (it holds the text and the parsed string: about 2 S).  Last,
# each tool with --max-record-bytes below S: the record is rejected
# (record-too-large) and the peak stays near the baseline.
#
# tokenize-shards writes binary token shards (ids, loss mask) of the chats:
# its loss mask needs each token's byte range, which the tokenizer hands
# over a stretch at a time (ftk_tokenizer_encode_each) instead of keeping 8
# bytes a token for the whole record.  The text here is about 7 bytes a
# token; text with more tokens a byte costs more (ids and mask are 5 bytes a
# token, and the record's line and its render are held while it is encoded).
#
# The last column says whether a tool meets the target of 4x.
#
#   sh bench/record_memory.sh                   bin/ (make), S = 16 and 64 MiB
#   FTK_BIN=/tmp/o/bin RECORD_MIB="32 200" sh bench/record_memory.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FTK_BIN:-$SRC/bin}
SIZES=${RECORD_MIB:-16 64}
TOK=$SRC/tests/fixtures/tokenizers/qwen3
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT

small() {
	i=0
	while [ $i -lt 100 ]; do
		printf '{"messages":[{"role":"user","content":"question %d"},{"role":"assistant","content":"answer %d"}]}\n' $i $i
		i=$((i + 1))
	done
}
# big MIB: one chat record whose user turn is MIB MiB of words
big() {
	python3 -c "
import sys
n = $1 << 20
words = ('lorem ipsum dolor sit amet consectetur adipiscing elit ' * (n // 56 + 1))[:n]
sys.stdout.write('{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"ok\"}]}\n' % words)"
}
# peak KB of a command (its output discarded)
peak() {
	/usr/bin/time -v "$@" > /dev/null 2> "$DIR/time.txt" || true
	awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$DIR/time.txt"
}

small > "$DIR/small.jsonl"
TOOLS="filter|$BIN/ftk-filter --max-chars 1000000000
dedupe-near|$BIN/ftk-dedupe --near
tokenize-chat|$BIN/ftk-tokenize --tokenizer $TOK --chat --count
tokenize-shards|$BIN/ftk-tokenize --tokenizer $TOK --chat --shards $DIR/shards
convert|$BIN/ftk-convert"
# the target (issue 18 item 13): at most 4x; python-json is the reference
verdict() { echo "$1" | awk '{ print ($1 <= 4.0) ? "ok" : "over 4x" }'; }
printf '%-15s %8s %10s %10s %8s  %s\n' tool MiB base_KB peak_KB ratio target
for s in $SIZES; do
	{ cat "$DIR/small.jsonl"; big "$s"; } > "$DIR/big.jsonl"
	bytes=$(($(wc -c < "$DIR/big.jsonl") - $(wc -c < "$DIR/small.jsonl")))
	base=$(peak python3 -c "import json; [json.loads(l) for l in open('$DIR/small.jsonl')]")
	p=$(peak python3 -c "import json; [json.loads(l) for l in open('$DIR/big.jsonl')]")
	printf '%-15s %8s %10s %10s %8.2f\n' python-json "$s" "$base" "$p" \
		"$(echo "($p - $base) * 1024 / $bytes" | bc -l)"
	echo "$TOOLS" | while IFS='|' read -r name cmd; do
		base=$(peak $cmd --max-record-bytes 1G "$DIR/small.jsonl")
		p=$(peak $cmd --max-record-bytes 1G "$DIR/big.jsonl")
		r=$(echo "($p - $base) * 1024 / $bytes" | bc -l)
		printf '%-15s %8s %10s %10s %8.2f  %s\n' "$name" "$s" "$base" "$p" "$r" "$(verdict "$r")"
	done
	echo "$TOOLS" | while IFS='|' read -r name cmd; do
		p=$(peak $cmd --max-record-bytes 1M --rejects "$DIR/rej.jsonl" "$DIR/big.jsonl")
		printf '%-15s %8s %10s %10s %8s  (--max-record-bytes 1M: %s)\n' "$name" "$s" - "$p" - \
			"$(jq -r '.reason + " " + (.size | tostring)' "$DIR/rej.jsonl")"
	done
done
