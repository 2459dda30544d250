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
# Every figure is given per wall-clock second and per CPU second (user +
# system): on a shared machine the wall clock measures the neighbours too,
# and the CPU-time ratios are the fair comparison.
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

# run a command; print "wall_seconds cpu_seconds" (cpu: the children's user + system)
timed() {
	python3 -c '
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
w = time.monotonic() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (w, r.ru_utime + r.ru_stime))
sys.exit(rc)' "$@"
}
node_rate() {	# lib file [dir] -> "bytes wall cpu"
	node "$REF/bench-tok.mjs" "$@" | jq -r '"\(.bytes) \(.seconds) \(.cpu_seconds)"'
}
mbs() { echo "$1 $2" | awk '{printf "%.1f", $1 / $2 / 1048576}'; }
row() {	# name bytes wall cpu [note]
	printf '%-34s %9s %9s %8.2f %8.2f  %s\n' "$1" "$(mbs "$2" "$3")" "$(mbs "$2" "$4")" "$3" "$4" "${5:-}"
}

echo "corpus: $(wc -c < "$W/corpus.jsonl") bytes of JSONL, $TEXT_BYTES bytes of text ($(wc -l < "$W/corpus.jsonl") records); load average $(cut -d' ' -f1 /proc/loadavg)"
set -- $(timed "$BIN/ftk-tokenize" --tokenizer "$T/llama3" --count -j 1 -q --stats "$W/st.json" "$W/corpus.jsonl"); w_l3=$1; c_l3=$2; tok_l3=$(jq .tokens "$W/st.json")
set -- $(timed "$BIN/ftk-tokenize" --tokenizer "$T/qwen3" --count -j 1 -q --stats "$W/st.json" "$W/corpus.jsonl"); w_q3=$1; c_q3=$2; tok_q3=$(jq .tokens "$W/st.json")
set -- $(node_rate tiktoken-cl100k "$W/corpus.jsonl"); b_cl=$1; w_cl=$2; c_cl=$3
set -- $(node_rate tiktoken-o200k "$W/corpus.jsonl"); b_o2=$1; w_o2=$2; c_o2=$3
set -- $(node_rate transformers "$W/small.jsonl" "$T/llama3"); b_tj=$1; w_tj=$2; c_tj=$3
printf '%-34s %9s %9s %8s %8s\n' "single thread, encode" "MiB/s" "MiB/cpu-s" "wall s" "cpu s"
row "ftk Llama 3 (incl. JSON parse)" "$TEXT_BYTES" "$w_l3" "$c_l3" "($tok_l3 tokens)"
row "ftk Qwen3 (incl. JSON parse)" "$TEXT_BYTES" "$w_q3" "$c_q3" "($tok_q3 tokens)"
row "npm tiktoken cl100k_base" "$b_cl" "$w_cl" "$c_cl"
row "npm tiktoken o200k_base" "$b_o2" "$w_o2" "$c_o2"
row "transformers.js Llama 3" "$b_tj" "$w_tj" "$c_tj" "(first $TJS_MB MB)"
ratio() {	# label: ftk rate over other rate, on wall and on cpu time
	echo "$2 $3 $4 $5 $6 $7" | awk -v l="$1" '{printf "ratio %-40s %6.2f (wall)  %6.2f (cpu)\n", l, ($1/$2)/($4/$5), ($1/$3)/($4/$6)}'
}
ratio "ftk Llama 3 / tiktoken cl100k" "$TEXT_BYTES" "$w_l3" "$c_l3" "$b_cl" "$w_cl" "$c_cl"
ratio "ftk Llama 3 / tiktoken o200k" "$TEXT_BYTES" "$w_l3" "$c_l3" "$b_o2" "$w_o2" "$c_o2"
ratio "ftk Llama 3 / transformers.js Llama 3" "$TEXT_BYTES" "$w_l3" "$c_l3" "$b_tj" "$w_tj" "$c_tj"
ratio "ftk Qwen3 / tiktoken o200k" "$TEXT_BYTES" "$w_q3" "$c_q3" "$b_o2" "$w_o2" "$c_o2"

# one long document
jq -j '.text' "$C4" > "$W/one.txt"
while [ "$(wc -c < "$W/one.txt")" -lt 17000000 ]; do cat "$W/one.txt" "$W/one.txt" > "$W/two.txt"; mv "$W/two.txt" "$W/one.txt"; done
python3 -c "
import json
t = open('$W/one.txt', encoding='utf-8').read()[:16000000]
with open('$W/long.jsonl', 'w') as f:
    json.dump({'text': t}, f)
    f.write('\n')"
for tk in llama3 qwen3 llama2; do
	set -- $(timed "$BIN/ftk-tokenize" --tokenizer "$T/$tk" --count -q --stats "$W/st.json" "$W/long.jsonl")
	printf 'one 16,000,000-character document, ftk %-7s %6.2f s wall %6.2f s cpu (%s tokens)\n' "$tk" "$1" "$2" "$(jq .tokens "$W/st.json")"
done
set -- $(node_rate tiktoken-cl100k "$W/long.jsonl")
printf 'one 16,000,000-character document, npm tiktoken cl100k_base %6.2f s wall %6.2f s cpu\n' "$2" "$3"
