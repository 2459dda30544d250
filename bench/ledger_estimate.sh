#!/bin/sh
# Does ftk-ledger estimate, calibrated by a 20-step smoke run, predict the
# wall time of a full CPU training run?  Target (issue 8): within 25%.
#
#   1. token shards for the model: ftk-tokenize --shards of the first
#      $RECORDS (default 50) records of datasets/llama_factory/c4_demo.jsonl
#      when this build has it, else synthetic shards written here (random ids:
#      the time of a step does not depend on which ids it sees, only on how
#      many);
#   2. a smoke run: ftk-train --max-steps $SMOKE_STEPS (default 20);
#   3. ftk-ledger estimate --calibrate SMOKE --token-stats SHARDS --epochs E
#      --device cpu, which prints the predicted seconds;
#   4. the full run with the same options, timed (process wall time, and the
#      training loop's own "elapsed" from the last line of its metrics.jsonl);
#   5. predicted, actual and their ratio.
#
# Environment: FTK_BIN (default bin), MODEL (default the bundled stories260K),
# SHARDS (an existing shard directory: skips step 1), EPOCHS (default 2),
# RECORDS (50), SEQS (synthetic sequences, default 400), SMOKE_STEPS (20), THREADS (0: all
# cores), TRAIN_ARGS (more ftk-train options for both runs, e.g. "--batch 8").
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
MODEL=${MODEL:-datasets/models/stories260K}
EPOCHS=${EPOCHS:-2}
SEQS=${SEQS:-400}
RECORDS=${RECORDS:-50}
SMOKE_STEPS=${SMOKE_STEPS:-20}
THREADS=${THREADS:-0}
work=${TMPDIR:-/tmp}/ftk-bench-ledger-estimate
rm -rf "$work"
mkdir -p "$work"

for p in ftk-train ftk-ledger; do
	if [ ! -x "$BIN/$p" ]; then
		echo "bench/ledger_estimate.sh: needs $BIN/$p (make, or FTK_BIN=DIR)" >&2
		exit 1
	fi
done

if [ -n "$SHARDS" ]; then
	shards=$SHARDS
	how="given: $SHARDS"
elif [ -x "$BIN/ftk-tokenize" ] && "$BIN/ftk-tokenize" --help 2>&1 | grep -q -- '--shards'; then
	shards=$work/shards
	head -n "$RECORDS" datasets/llama_factory/c4_demo.jsonl > "$work/c4.jsonl"
	"$BIN/ftk-tokenize" -q --tokenizer "$MODEL" --add-special --shards "$shards" \
		"$work/c4.jsonl" > /dev/null
	how="ftk-tokenize of the first $RECORDS records of datasets/llama_factory/c4_demo.jsonl"
else
	# lib/shard.h's layout: a 256-byte header, then (u32 len, u32 ids, u8 mask)
	# per sequence, zstd-compressed; manifest.json written last.
	shards=$work/shards
	mkdir -p "$shards"
	hash=$(xxh128sum "$MODEL/tokenizer.json" | cut -c1-32)
	vocab=$(jq .vocab_size "$MODEL/config.json")
	/usr/bin/python3 - "$shards" "$hash" "$vocab" "$SEQS" <<'EOF' | zstd -q -o "$shards/shard-00000.ftks.zst"
import json, random, struct, sys
out, tok_hash, vocab, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(42)
w = sys.stdout.buffer
hdr = b"FTKSHRD\0" + struct.pack("<IIII", 1, 0, vocab, 0) + tok_hash.encode() + b"\0"
hdr += b"raw".ljust(64, b"\0")
w.write(hdr.ljust(256, b"\0"))
tokens = masked = 0
for i in range(n):
    L = rng.randint(64, 500)
    w.write(struct.pack("<I", L))
    w.write(struct.pack("<%dI" % L, 1, *[rng.randrange(3, vocab) for _ in range(L - 1)]))
    mask = bytes([0] * (L // 4) + [1] * (L - L // 4))
    w.write(mask)
    tokens += L
    masked += L - L // 4
man = {"format": "ftk-shards", "version": 1, "kind": "sft", "vocab_size": vocab,
       "tokenizer_hash": tok_hash, "template": "raw", "sequences": n, "tokens": tokens,
       "masked_tokens": masked,
       "shards": [{"file": "shard-00000.ftks.zst", "sequences": n, "tokens": tokens}]}
open(out + "/manifest.json", "w").write(json.dumps(man))
EOF
	how="synthetic: $SEQS sequences of random ids (no ftk-tokenize --shards in this build)"
fi

train() { # out_dir, extra options...
	out=$1
	shift
	"$BIN/ftk-train" -q --model "$MODEL" --data "$shards" --out "$out" --threads "$THREADS" \
		$TRAIN_ARGS "$@"
}

train "$work/smoke" --max-steps "$SMOKE_STEPS" --epochs "$EPOCHS"
"$BIN/ftk-ledger" estimate --model "$MODEL" --token-stats "$shards" --epochs "$EPOCHS" \
	--device cpu --calibrate "$work/smoke" --at 2026-11-23 > "$work/estimate.txt"
"$BIN/ftk-ledger" estimate --model "$MODEL" --token-stats "$shards" --epochs "$EPOCHS" \
	--device cpu --calibrate "$work/smoke" --at 2026-11-23 --json > "$work/estimate.json"
predicted=$(jq .seconds_per_run "$work/estimate.json")

s=$(date +%s.%N)
train "$work/full" --epochs "$EPOCHS"
e=$(date +%s.%N)
wall=$(echo "$e - $s" | bc -l)
loop=$(tail -n 1 "$work/full/metrics.jsonl" | jq .elapsed)
steps=$(tail -n 1 "$work/full/metrics.jsonl" | jq .step)
tokens=$(tail -n 1 "$work/full/metrics.jsonl" | jq .tokens)

sed 's/^/  /' "$work/estimate.txt"
echo "shards: $how"
echo "full run: $steps steps, $tokens tokens, $EPOCHS epochs, threads $THREADS"
printf 'predicted  %8.2f s  (ftk-ledger estimate, calibrated by %s smoke steps)\n' "$predicted" "$SMOKE_STEPS"
printf 'actual     %8.2f s  wall time of ftk-train (model load, quantization, checkpoint included)\n' "$wall"
printf 'actual     %8.2f s  training loop ("elapsed" of the last metrics line)\n' "$loop"
printf 'ratio predicted/actual: %.3f (wall), %.3f (loop); target 0.75 to 1.25\n' \
	"$(echo "$predicted / $wall" | bc -l)" "$(echo "$predicted / $loop" | bc -l)"
