#!/bin/sh
# bench/tokenize.sh: single-thread tokenizer throughput, ftk against npm
# tiktoken and transformers.js measured in the same run, with ratios.
#
#   sh bench/tokenize.sh            (after make; FTK_BIN=dir overrides ./bin)
#   SIZE_MB=100 TJS_MB=8 sh bench/tokenize.sh
#
# Text: datasets/llama_factory/c4_demo.jsonl (real English web text) repeated
# to SIZE_MB megabytes of JSONL.  ftk runs `ftk-tokenize --count -j 1` on it,
# so its time includes reading and parsing the JSON; the node tools get the
# texts in memory and only encoding is timed, which favours them.
# transformers.js is slow, so it gets the first TJS_MB megabytes; a rate is
# a rate.  Then one document of 16,000,000 characters (the c4 texts joined)
# through ftk with Llama 3, Qwen3 and the SentencePiece-style Llama 2
# tokenizer (a single pre-token: the case that goes quadratic elsewhere).
#
# Targets (issue 3): Llama 3 at least 40 MiB/s and at least 2x npm tiktoken;
# the long document in under 2 seconds.  The figures are printed, not asserted.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FTK_BIN:-$SRC/bin}
SIZE_MB=${SIZE_MB:-100}
TJS_MB=${TJS_MB:-8}
W=${TMPDIR:-/tmp}/ftk-bench-tokenize
REF=$SRC/tools/ref
T=$SRC/tests/fixtures/tokenizers
mkdir -p "$W"
[ -x "$BIN/ftk-tokenize" ] || { echo "bench: build first (make), no $BIN/ftk-tokenize" >&2; exit 2; }
if [ ! -d "$REF/node_modules/tiktoken" ] || [ ! -d "$REF/node_modules/@huggingface/transformers" ]; then
	echo "bench: installing the node reference tools in $REF (npm install --ignore-scripts)" >&2
	(cd "$REF" && npm install --ignore-scripts --no-audit --no-fund >/dev/null 2>&1)
fi

# the corpus
C4=$SRC/datasets/llama_factory/c4_demo.jsonl
: > "$W/corpus.jsonl"
while [ "$(wc -c < "$W/corpus.jsonl")" -lt $((SIZE_MB * 1000000)) ]; do cat "$C4" >> "$W/corpus.jsonl"; done
head -c $((TJS_MB * 1000000)) "$W/corpus.jsonl" | sed '$d' > "$W/small.jsonl"
TEXT_BYTES=$(jq -j '.text' "$W/corpus.jsonl" | wc -c)

now() { date +%s.%N; }
ftk_rate() {	# tokenizer -> seconds
	t0=$(now)
	"$BIN/ftk-tokenize" --tokenizer "$1" --count -j 1 -q --stats "$W/st.json" "$W/corpus.jsonl" > /dev/null
	t1=$(now)
	echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}'
}
node_rate() {	# lib file [dir] -> "bytes seconds"
	node "$REF/bench-tok.mjs" "$@" | jq -r '"\(.bytes) \(.seconds)"'
}
mbs() { echo "$1 $2" | awk '{printf "%.1f", $1 / $2 / 1048576}'; }

echo "corpus: $(wc -c < "$W/corpus.jsonl") bytes of JSONL, $TEXT_BYTES bytes of text ($(wc -l < "$W/corpus.jsonl") records)"
s_l3=$(ftk_rate "$T/llama3"); tok_l3=$(jq .tokens "$W/st.json")
s_q3=$(ftk_rate "$T/qwen3"); tok_q3=$(jq .tokens "$W/st.json")
set -- $(node_rate tiktoken-cl100k "$W/corpus.jsonl"); b_cl=$1; s_cl=$2
set -- $(node_rate tiktoken-o200k "$W/corpus.jsonl"); b_o2=$1; s_o2=$2
set -- $(node_rate transformers "$W/small.jsonl" "$T/llama3"); b_tj=$1; s_tj=$2
r_l3=$(mbs "$TEXT_BYTES" "$s_l3"); r_q3=$(mbs "$TEXT_BYTES" "$s_q3")
r_cl=$(mbs "$b_cl" "$s_cl"); r_o2=$(mbs "$b_o2" "$s_o2"); r_tj=$(mbs "$b_tj" "$s_tj")
printf '%-34s %10s %8s\n' "single thread, encode" "MiB/s" "seconds"
printf '%-34s %10s %8s  (%s tokens)\n' "ftk Llama 3 (incl. JSON parse)" "$r_l3" "$s_l3" "$tok_l3"
printf '%-34s %10s %8s  (%s tokens)\n' "ftk Qwen3 (incl. JSON parse)" "$r_q3" "$s_q3" "$tok_q3"
printf '%-34s %10s %8s\n' "npm tiktoken cl100k_base" "$r_cl" "$s_cl"
printf '%-34s %10s %8s\n' "npm tiktoken o200k_base" "$r_o2" "$s_o2"
printf '%-34s %10s %8s  (first %s MB)\n' "transformers.js Llama 3" "$r_tj" "$s_tj" "$TJS_MB"
echo "$r_l3 $r_cl $r_o2 $r_tj $r_q3" | awk '{printf "ratios: ftk Llama 3 / tiktoken cl100k = %.2f, / tiktoken o200k = %.2f, / transformers.js = %.1f; ftk Qwen3 / tiktoken o200k = %.2f\n", $1/$2, $1/$3, $1/$4, $5/$3}'

# one long document
jq -j '.text' "$C4" > "$W/one.txt"
while [ "$(wc -c < "$W/one.txt")" -lt 17000000 ]; do cat "$W/one.txt" "$W/one.txt" > "$W/two.txt"; mv "$W/two.txt" "$W/one.txt"; done
python3 -c "
import json,sys
t=open('$W/one.txt',encoding='utf-8').read()[:16000000]
json.dump({'text':t},open('$W/long.jsonl','w'))
print()" > /dev/null
echo >> "$W/long.jsonl"
for tk in llama3 qwen3 llama2; do
	t0=$(now)
	"$BIN/ftk-tokenize" --tokenizer "$T/$tk" --count -q "$W/long.jsonl" | jq -r .n_tokens > "$W/n"
	t1=$(now)
	echo "$t0 $t1 $(cat "$W/n") $tk" | awk '{printf "one 16,000,000-character document, ftk %-7s %.2f s (%d tokens)\n", $4, $2 - $1, $3}'
done
set -- $(node_rate tiktoken-cl100k "$W/long.jsonl"); echo "$2" | awk '{printf "one 16,000,000-character document, npm tiktoken cl100k_base %.2f s\n", $1}'
