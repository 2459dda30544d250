#!/bin/sh
# Log-likelihood scoring speed (choices per second) of ftk eval on
# stories260K: the local backend with 1 and 2 engines, and through ftk-serve
# (/v1/completions with echo and logprobs, 2 workers, -j 2), against a
# baseline measured in the same run: tools/ref/eval_ref.py's PyTorch forward
# (float64, one forward pass per choice, 1 thread) on the same token ids.
# The requests are the 61 (context, continuation) pairs of
# tests/fixtures/eval/loglik_ref.json whose continuation is " " + a choice
# (ARC, HellaSwag, MMLU and TruthfulQA contexts, and one past the context).
#
#   bench/eval_loglik.sh        (FTK_BIN=dir of the ftk binaries, default bin)
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
M=datasets/models/stories260K
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
jq -c '.requests | to_entries[] | select(.value.continuation | startswith(" "))
	| {id: "r\(.key)", context: .value.context, choices: [.value.continuation[1:]], answer: 0}' \
	tests/fixtures/eval/loglik_ref.json > "$work/ref.jsonl"
echo '{"name":"ref","cases":"ref.jsonl","output_type":"multiple_choice","metrics":["acc"]}' > "$work/ref.json"
n=$(wc -l < "$work/ref.jsonl")
now() { date +%s.%N; }
rate() { echo "$n $1 $2" | awk '{printf "%.1f", $1 / ($3 - $2)}'; }
t0=$(now); "$BIN/ftk-eval" run "$work/ref.json" -o "$work/l1" --model-dir $M -j 1 -q > /dev/null; t1=$(now)
local1=$(rate "$t0" "$t1")
t0=$(now); "$BIN/ftk-eval" run "$work/ref.json" -o "$work/l2" --model-dir $M -j 2 -q > /dev/null; t1=$(now)
local2=$(rate "$t0" "$t1")
"$BIN/ftk-serve" -q --model $M --port 0 --port-file "$work/port" --workers 2 &
pid=$!
while [ ! -s "$work/port" ]; do sleep 0.1; done
t0=$(now)
"$BIN/ftk-eval" run "$work/ref.json" -o "$work/s" --endpoint "http://127.0.0.1:$(cat "$work/port")" \
	--model stories260K --tokenizer $M -j 2 -q > /dev/null
t1=$(now)
served=$(rate "$t0" "$t1")
torch=$(OMP_NUM_THREADS=1 /usr/bin/python3 - <<'PY'
import json, sys, time
sys.path.insert(0, "tools/ref")
import torch
torch.set_num_threads(1)
import eval_ref
fwd, _ = eval_ref.make_forward()
reqs = [r for r in json.load(open("tests/fixtures/eval/loglik_ref.json"))["requests"]
        if r["continuation"].startswith(" ")]
t0 = time.time()
for r in reqs:
    lp = fwd(r["ids"][:-1])
    sum(float(lp[j - 1, r["ids"][j]]) for j in range(r["n_ctx"], len(r["ids"])))
print("%.1f" % (len(reqs) / (time.time() - t0)))
PY
)
echo "log-likelihood scoring, stories260K, $n choices (whole runs, model loading included for ftk)"
printf '  %-40s %10s %8s\n' "" "choices/s" "ratio"
for k in torch local1 local2 served; do
	eval v=\$$k
	case $k in
	torch) name="PyTorch 1.13 float64, 1 thread";;
	local1) name="ftk eval --model-dir, -j 1";;
	local2) name="ftk eval --model-dir, -j 2";;
	served) name="ftk eval --endpoint ftk-serve, -j 2";;
	esac
	printf '  %-40s %10s %8s\n' "$name" "$v" "$(echo "$v $torch" | awk '{printf "%.2fx", $1 / $2}')"
done
