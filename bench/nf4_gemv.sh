#!/bin/sh
# The CPU backend's NF4 product for a few input rows (generation) against
# the loop it replaced and against dequantize-to-tile + sgemm, measured in
# the same run on one thread (bench/nf4_gemv.c says what each is).
#
# Shapes: a 2048 x 2048 projection, and the up (5632 x 2048) and down
# (2048 x 5632) projections of a TinyLlama-sized MLP.  Prints one line per
# shape and M with the times and the ratios before/backend (> 1: the
# backend is faster than the loop it replaced) and tiles/backend.
#
#   sh bench/nf4_gemv.sh       (FTK_O=build dir, default /tmp/ftk-bench-build; ROUNDS=5)
set -e
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
O=${FTK_O:-/tmp/ftk-bench-build}
work=${TMPDIR:-/tmp}/ftk-bench-nf4
mkdir -p "$work"
make -s O="$O" -j2 "$O/build/model/libftkmodel.a" "$O/build/lib/libftk.a" >/dev/null 2>&1
cc -O2 -std=c11 -D_GNU_SOURCE -I. -Ilib $(pkg-config --cflags libcjson openblas) \
	-o "$work/nf4_gemv" bench/nf4_gemv.c "$O/build/model/libftkmodel.a" \
	"$O/build/lib/libftk.a" $(pkg-config --libs libcjson openblas libzstd libxxhash) -lm -pthread
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
"$work/nf4_gemv" 2048 2048 "$ROUNDS"
"$work/nf4_gemv" 5632 2048 "$ROUNDS"
"$work/nf4_gemv" 2048 5632 "$ROUNDS"
