#!/bin/sh
# Peak memory of a long-sequence QLoRA step with flash attention
# (--attention flash) against the saved T x T probabilities (--attention
# full) and against PyTorch 1.13's eager attention (which also keeps them),
# measured in the same run.
#
# The model is bench/train.sh's (hidden 512, 5 layers, 8 heads of 64 on 4
# KV heads, intermediate 1536, vocab 8192, random weights); one step of
# B x T tokens (default 1 x 2048; the model runs past its 1024 positions,
# RoPE has no limit) with LoRA rank 16 on all seven projections, after one
# warm-up step, THREADS threads (default 2).  Prints each side's peak RSS,
# tokens/s, the loss (full and flash must agree) and the ratios.  The full
# path's probabilities alone are 5 x B x 8 x T x T floats (640 MiB at
# T 2048); flash keeps 5 x B x 8 x T log-sum-exps.
#
#   sh bench/attention_memory.sh        (T=4096 B=1 THREADS=2 TORCH=0 to vary)
set -e
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
B=${B:-1}
T=${T:-2048}
RANK=${RANK:-16}
TORCH=${TORCH:-1}
. bench/train_setup.sh

echo "one QLoRA step, $B x $T tokens, rank $RANK, $THREADS threads"
full=$(FTK_BENCH_ATTENTION=full "$work/train_step" "$work/model" "$THREADS" "$B" "$T" "$RANK" 1 nf4)
echo "  full:  $full" >&2
flash=$(FTK_BENCH_ATTENTION=flash "$work/train_step" "$work/model" "$THREADS" "$B" "$T" "$RANK" 1 nf4)
echo "  flash: $flash" >&2
printf '  %-28s %10s %12s %8s\n' "" "peak MiB" "tokens/s" "loss"
for k in full flash; do
	eval l=\$$k
	printf '  %-28s %10s %12s %8s\n' "ftk --attention $k" "$(field "$l" peak_rss_mb)" \
		"$(field "$l" tokens_per_s)" "$(field "$l" loss)"
done
if [ "$TORCH" = 1 ]; then
	py=$($PY bench/train_torch.py "$work/model" "$THREADS" "$B" "$T" "$RANK" 1)
	echo "  torch: $py" >&2
	printf '  %-28s %10s %12s %8s\n' "PyTorch 1.13 eager" "$(field "$py" peak_rss_mb)" \
		"$(field "$py" tokens_per_s)" "$(field "$py" loss)"
fi
awk -v a="$(field "$full" peak_rss_mb)" -v b="$(field "$flash" peak_rss_mb)" \
	-v sa="$(field "$full" tokens_per_s)" -v sb="$(field "$flash" tokens_per_s)" 'BEGIN {
	printf "  peak memory full / flash: %.2f   speed flash / full: %.2f\n", a / b, sb / sa }'
if [ "$TORCH" = 1 ]; then
	awk -v a="$(field "$py" peak_rss_mb)" -v b="$(field "$flash" peak_rss_mb)" 'BEGIN {
		printf "  peak memory PyTorch / ftk flash: %.2f\n", a / b }'
fi
