#!/bin/sh
# make demo: the whole ftk pipeline on bundled real samples, on CPU.
#
#  1. prep, as one shell pipeline: convert -> validate -> dedupe -> decontam
#     (against the eval suite) -> scrub -> filter, then split and tokenize;
#     every stage's rejects and closing summary kept in demo-out/prep/.
#  2. the task: answer a request ("Give the ball to Lily.") with the right
#     function call (give(item="ball", to="Lily")).  stories260K cannot do it
#     before training; the eval suite asks about (name, object) pairs never
#     seen together in training and judges the calls by BFCL's rules.
#  3. ftk-train (QLoRA: NF4 base, LoRA on every projection) with checkpoints,
#     evaluated against the suite at each checkpoint (--eval), then ftk-merge.
#  4. ftk-eval on the base and on the fine-tuned model, and ftk-eval compare.
#  5. ftk-report (HTML) and the cost table from ftk-ledger, with the time a
#     person spent on the data logged beside the machine's.
#
# FTK_BIN is where the programs are (make demo sets it).  DEMO_OUT (default
# demo-out) receives everything.  DEMO_QUICK=1 trains for a few steps only (for
# the end-to-end test).
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-$PWD/bin}
PATH="$BIN:$PATH"
OUT=${DEMO_OUT:-demo-out}
M=datasets/models/stories260K
D=datasets/demo
rm -rf "$OUT"
mkdir -p "$OUT/prep"
export FTK_LEDGER="$OUT/ledger.jsonl" FTK_RUN=demo
P="$OUT/prep"
t0=$(date +%s)
say() { printf '\n== %s\n' "$*"; }

say "1. prep: convert | validate | dedupe | decontam | scrub | filter, then split and tokenize"
# (scrub --no-allowlist: the planted personal data uses example.com addresses and
# Ofcom's drama numbers, documentation forms ftk-scrub otherwise leaves alone)
ftk ledger log --hours 0.5 --stage prep --who "demo author" \
	--note "wrote the task generator and chose the held-out pairs" >/dev/null
ftk convert datasets/llama_factory/identity.json "$D/calls_train.json" \
		--rejects "$P/rej-convert.jsonl" --stats "$P/convert.json" \
	| ftk validate --show 3 --rejects "$P/rej-validate.jsonl" --stats "$P/validate.json" \
	| ftk dedupe --near --threshold 0.8 --rejects "$P/rej-dedupe.jsonl" --stats "$P/dedupe.json" \
	| ftk decontam --eval "$D/calls_eval.jsonl" --ngram 7 --rejects "$P/rej-decontam.jsonl" \
		--stats "$P/decontam.json" \
	| ftk scrub --no-allowlist --rejects "$P/rej-scrub.jsonl" --stats "$P/scrub.json" \
	| ftk filter --max-chars 400 --rejects "$P/rej-filter.jsonl" --stats "$P/filter.json" \
	> "$P/clean.jsonl" || true
ftk split --ratios 0.95,0.05 --names train,val --seed 1 --outdir "$P" "$P/clean.jsonl"
ftk tokenize --tokenizer "$M" --shards "$P/shards-train" --max-tokens 128 \
	--rejects "$P/rej-tokenize.jsonl" --stats "$P/tokenize.json" "$P/train.jsonl" >/dev/null
ftk tokenize -q --tokenizer "$M" --shards "$P/shards-val" --max-tokens 128 "$P/val.jsonl" >/dev/null
printf '%-10s %6s %6s %8s  %s\n' stage in out rejected "reasons"
for s in convert validate dedupe decontam scrub filter tokenize; do
	jq -r --arg s "$s" '[$s, .in, .out, .rejected, (.reasons | to_entries | map("\(.key) \(.value)") | join(", "))] | @tsv' \
		"$P/$s.json" | awk -F'\t' '{printf "%-10s %6s %6s %8s  %s\n", $1, $2, $3, $4, $5}'
done
echo "planted by datasets/demo/make_demo.py: $(jq -c . "$D/planted.json")"

say "2. the base model on the held-out eval suite"
ftk eval run "$D/calls_suite.json" --model-dir "$M" -o "$OUT/eval-base" --no-cache -q || true

say "3. ftk-train: QLoRA on CPU, checkpoints every 50 steps"
if [ "$DEMO_QUICK" = 1 ]; then steps="--max-steps 60"; else steps="--epochs 4"; fi
ftk train --model "$M" --data "$P/shards-train" --val "$P/shards-val" --out "$OUT/run" \
	--seq-len 256 --batch 8 --rank 16 --alpha 32 --lr 5e-3 --warmup 20 $steps \
	--eval-every 50 --ckpt-every 50 --keep 2 --threads 2 --usd-per-hour 0.10 \
	--eval "$D/calls_suite.json" --eval-limit 20
echo "  the run's loss and quality curves (metrics.jsonl; the eval at each checkpoint is on 20 cases):"
jq -r 'select(.val_loss) | "  step \(.step): validation loss \(.val_loss)"' "$OUT/run/metrics.jsonl"
jq -r 'select(.eval) | "  step \(.step): toolcall.correct \(.eval.metrics["toolcall.correct"].mean) (base \(.eval.metrics["toolcall.correct"].base))\(if (.eval.regressed | length) > 0 then ", REGRESSED" else "" end)"' "$OUT/run/metrics.jsonl"
ftk merge --model "$M" --adapter "$OUT/run/adapter" --out "$OUT/merged"

say "4. the fine-tuned model on the same suite, and the paired comparison"
ftk eval run "$D/calls_suite.json" --model-dir "$M" --adapter "$OUT/run/adapter" \
	-o "$OUT/eval-tuned" --no-cache -q || true
ftk eval compare "$OUT/eval-base" "$OUT/eval-tuned" || true

say "5. report and costs"
if command -v ftk-report >/dev/null; then
	ftk report --out "$OUT/report.html" --ledger "$FTK_LEDGER" "$OUT/eval-base" "$OUT/eval-tuned"
fi
ftk ledger report --ledger "$FTK_LEDGER" || true
t1=$(date +%s)
echo
echo "demo finished in $((t1 - t0)) s.  Everything is in $OUT/:"
echo "  $OUT/prep/        each stage's rejects (rej-*.jsonl) and summary (*.json)"
echo "  $OUT/run/         the training run: metrics.jsonl, checkpoints/, adapter/"
echo "  $OUT/merged/      the merged model, a Hugging Face directory"
echo "  $OUT/eval-*/      results.jsonl and summary.json of each eval run"
[ -f "$OUT/report.html" ] && echo "  open $OUT/report.html in a browser for the report"
echo "  $OUT/ledger.jsonl the cost ledger"
