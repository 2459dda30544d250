#!/bin/sh
# Peak memory of ftk eval's local backend with 1 and 4 engines (-j), which
# share one copy of the weights (ftk_infer_open_n; issue 20 item 9), on
# stories260K and on the random 20M-parameter Llama of bench/train_model.py
# (float32, with stories260K's tokenizer: its 512 ids are within the 8192
# vocabulary).  The run: the 20 HellaSwag cases of datasets/evals, scored by
# log-likelihood (4 choices each).  Peak RSS from /usr/bin/time -v.
#
# Printed for each model: the weights' bytes (model.safetensors, float32 as
# loaded), peak RSS of -j 1 and -j 4 and their ratio; the per-engine memory
# (-j 4 minus -j 1, over 3: each engine's KV cache, activations, scratch and
# logits buffers, which grow with the longest context it scored); the ratio
# with that per-engine part taken out ((j4 - 3 x per-engine) / j1, 1.0 when
# nothing else grows); and what 4 unshared copies of the weights would have
# needed (j1 + 3 x weights, an estimate: what -j 4 cost before sharing) as the
# ratio to compare against.
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

# peak RSS in kB of an eval run with -j $2 on model dir $1
peak() {
	/usr/bin/time -v "$BIN/ftk-eval" run "$work/hs.json" -o "$work/run-$$-$2" --model-dir "$1" \
		-j "$2" -q > /dev/null 2> "$work/time.txt"
	rm -rf "$work/run-$$-$2"
	sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt"
}

printf '%-28s %10s %10s %10s %7s %12s %13s %15s\n' model "weights kB" "j1 kB" "j4 kB" j4/j1 \
	"per-engine" "j4/j1 excl." "unshared j4/j1"
for m in "$S" "$big"; do
	w=$(( $(stat -c %s "$m/model.safetensors") / 1024 ))
	j1=$(peak "$m" 1)
	j4=$(peak "$m" 4)
	name=stories260K
	[ "$m" = "$big" ] && name="random Llama 20M (f32)"
	awk -v name="$name" -v w="$w" -v j1="$j1" -v j4="$j4" 'BEGIN {
		per = (j4 - j1) / 3; if (per < 0) per = 0
		printf "%-28s %10d %10d %10d %7.2f %12d %13.2f %15.2f\n", name, w, j1, j4, j4 / j1,
			per, (j4 - 3 * per) / j1, (j1 + 3 * w) / j1 }'
done
