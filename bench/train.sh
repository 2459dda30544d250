#!/bin/sh
# ftk's QLoRA training step against a hand-written PyTorch model with LoRA,
# measured in the same run.
#
# Builds a Llama-shaped model with random weights (hidden 512, 5 layers, 8
# heads, 4 KV heads, intermediate 1536, vocab 8192, tied: 19.9M parameters),
# then times whole training steps (forward, backward, AdamW on the LoRA
# weights) with LoRA rank 16 (alpha 32) on all seven projections, batch
# B x 256 tokens, THREADS threads (default 2):
#   ftk      NF4 base (QLoRA) and, for reference, the float32 base
#   PyTorch  Debian's python3-torch 1.13, float32 base (no bitsandbytes on CPU)
# Both get OPENBLAS_NUM_THREADS=THREADS before they start and
# OMP_WAIT_POLICY=PASSIVE (see /work/shared/BENCH.md); ftk's step runs in one
# process per measurement, PyTorch's likewise, alternating, best of ROUNDS.
# Prints tokens/s of each and the ratio, ftk's GFLOP/s (operations counted
# from the shapes, see bench/train_step.c) next to OpenBLAS sgemm's rate
# measured here on the model's largest product shape (best of one
# measurement per round), and peak RSS.
# Targets (issue 6): ftk >= 1.5x PyTorch tokens/s; >= 50% of the sgemm peak.
# Each round's raw lines go to stderr.  Tokens per CPU-second (user + system
# time of the process) are printed too: on a shared machine they move less
# with other people's load than wall-clock rates do.
#
#   sh bench/train.sh            (FTK_O=build dir, default /tmp/ftk-bench-build)
set -e
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
B=${B:-4}
T=${T:-256}
RANK=${RANK:-16}
STEPS=${STEPS:-3}
ROUNDS=${ROUNDS:-2}
. bench/train_setup.sh

max() { echo "$1 $2" | awk '{print ($1 > $2) ? $1 : $2}'; }
best_ftk="" best_f32="" best_py="" line_ftk="" line_py="" cpu_ftk="" cpu_py="" sg="" sg1=""
r=0
while [ $r -lt "$ROUNDS" ]; do
	l=$("$work/train_step" "$work/model" "$THREADS" "$B" "$T" "$RANK" "$STEPS" nf4)
	echo "  round $r: $l" >&2
	v=$(field "$l" tokens_per_s)
	if [ -z "$best_ftk" ] || [ "$(max "$v" "$best_ftk")" = "$v" ]; then best_ftk=$v; line_ftk=$l; fi
	v=$(field "$l" tokens_per_cpu_s)
	if [ -z "$cpu_ftk" ] || [ "$(max "$v" "$cpu_ftk")" = "$v" ]; then cpu_ftk=$v; fi
	l=$($PY bench/train_torch.py "$work/model" "$THREADS" "$B" "$T" "$RANK" "$STEPS")
	echo "  round $r: $l" >&2
	v=$(field "$l" tokens_per_s)
	if [ -z "$best_py" ] || [ "$(max "$v" "$best_py")" = "$v" ]; then best_py=$v; line_py=$l; fi
	v=$(field "$l" tokens_per_cpu_s)
	if [ -z "$cpu_py" ] || [ "$(max "$v" "$cpu_py")" = "$v" ]; then cpu_py=$v; fi
	v=$(field "$("$work/train_step" --sgemm "$THREADS")" gflops_1024x1536x512)
	if [ -z "$sg" ] || [ "$(max "$v" "$sg")" = "$v" ]; then sg=$v; fi
	v=$(field "$("$work/train_step" --sgemm 1)" gflops_1024x1536x512)
	if [ -z "$sg1" ] || [ "$(max "$v" "$sg1")" = "$v" ]; then sg1=$v; fi
	l=$("$work/train_step" "$work/model" "$THREADS" "$B" "$T" "$RANK" "$STEPS" none)
	v=$(field "$l" tokens_per_s)
	if [ -z "$best_f32" ] || [ "$(max "$v" "$best_f32")" = "$v" ]; then best_f32=$v; fi
	r=$((r + 1))
done
gf=$(field "$line_ftk" gflops)
gfc=$(echo "$(field "$line_ftk" gflop_per_step) $(field "$line_ftk" cpu_s)" | awk '{printf "%.1f", $1 / $2}')
echo "model: $(field "$line_ftk" params) parameters, batch ${B}x${T}, LoRA rank $RANK on q,k,v,o,gate,up,down, $THREADS threads, best of $ROUNDS x $STEPS steps"
echo "ftk QLoRA (NF4 base)   $best_ftk tokens/s   peak RSS $(field "$line_ftk" peak_rss_mb) MB"
echo "ftk LoRA (f32 base)    $best_f32 tokens/s"
echo "PyTorch (f32 base)     $best_py tokens/s   peak RSS $(field "$line_py" peak_rss_mb) MB"
echo "ratio ftk/PyTorch      $(echo "$best_ftk $best_py" | awk '{printf "%.2f", $1 / $2}')x (target >= 1.5)"
echo "per CPU-second         ftk $cpu_ftk, PyTorch $cpu_py tokens: $(echo "$cpu_ftk $cpu_py" | awk '{printf "%.2f", $1 / $2}')x (less sensitive to other load on the machine)"
echo "ftk arithmetic         $gf GFLOP/s of $(field "$line_ftk" gflop_per_step) GFLOP/step; sgemm here $sg GFLOP/s (1024x1536x512, $THREADS threads): $(echo "$gf $sg" | awk '{printf "%.0f", 100 * $1 / $2}')% (target >= 50%)"
echo "per CPU-second         ftk $gfc GFLOP; one-thread sgemm $sg1 GFLOP/s: $(echo "$gfc $sg1" | awk '{printf "%.0f", 100 * $1 / $2}')%"
