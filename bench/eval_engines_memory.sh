#!/bin/sh
# Peak memory of ftk eval's local backend with 1 and 4 engines (-j), which
# share one copy of the weights (ftk_infer_open_n; issue 20 item 9), on
# stories260K and on the random 20M-parameter Llama of bench/train_model.py
# (float32, with stories260K's tokenizer: its 512 ids are within the 8192
# vocabulary).  The run: the 20 HellaSwag cases of datasets/evals, scored by
# log-likelihood (4 choices each).  Peak RSS from /usr/bin/time -v.
#
# Printed for each model: the weights' bytes (model.safetensors, float32 as
# loaded), peak RSS of -j 1 and -j 4 and their ratio, and the memory each
# extra engine adds, (j4 - j1) / 3: what is genuinely per engine (its KV
# cache, one layer of activations, logits, and its thread's OpenBLAS buffer
# and malloc arena), to set beside the weights it no longer copies.  With
# FTK_BIN_BEFORE (the binaries of an ftk before the sharing, e.g. main built
# in another O=) the same two runs of that build are measured in this run too.
#
#   bench/eval_engines_memory.sh     (FTK_BIN=dir of the ftk binaries, default bin)
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
S=datasets/models/stories260K
"$BIN/ftk-eval" import hellaswag datasets/evals/hellaswag.jsonl -o "$work/hs.json" -q
big="$work/model20m"
/usr/bin/python3 bench/train_model.py "$big" > /dev/null
cp $S/tokenizer.json $S/tokenizer_config.json "$big/"
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

# peak RSS in kB of an eval run by the binaries in $1 with -j $3 on model dir $2
peak() {
	/usr/bin/time -v "$1/ftk-eval" run "$work/hs.json" -o "$work/run" --model-dir "$2" \
		-j "$3" -q > /dev/null 2> "$work/time.txt"
	rm -rf "$work/run"
	sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt"
}

row() {	# name weights j1 j4
	awk -v name="$1" -v w="$2" -v j1="$3" -v j4="$4" 'BEGIN {
		printf "%-34s %10d %10d %10d %7.2f %12d\n", name, w, j1, j4, j4 / j1, (j4 - j1) / 3 }'
}
printf '%-34s %10s %10s %10s %7s %12s\n' "model (peak RSS)" "weights kB" "-j 1 kB" "-j 4 kB" \
	"ratio" "kB/engine"
for m in "$S" "$big"; do
	w=$(( $(stat -c %s "$m/model.safetensors") / 1024 ))
	name=stories260K
	[ "$m" = "$big" ] && name="random Llama 20M (f32)"
	row "$name" "$w" "$(peak "$BIN" "$m" 1)" "$(peak "$BIN" "$m" 4)"
	[ -n "$FTK_BIN_BEFORE" ] &&
		row "  before sharing" "$w" "$(peak "$FTK_BIN_BEFORE" "$m" 1)" "$(peak "$FTK_BIN_BEFORE" "$m" 4)"
done
exit 0
