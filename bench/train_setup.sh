# bench/train_setup.sh: sourced by bench/train.sh and bench/attention_memory.sh
# (from the source tree's root, with THREADS set).  Builds the model runtime and
# lib archives in FTK_O (default /tmp/ftk-bench-build), compiles
# bench/train_step.c against them into $work, makes the random 20M-parameter
# model once (bench/train_model.py), and sets the thread variables both
# sides of a comparison start with (see /work/shared/BENCH.md).
O=${FTK_O:-/tmp/ftk-bench-build}
work=${TMPDIR:-/tmp}/ftk-bench-train
PY=/usr/bin/python3
mkdir -p "$work"
make -s O="$O" -j2 "$O/build/model/libftkmodel.a" "$O/build/lib/libftk.a" >/dev/null 2>&1
cc -O2 -std=c11 -D_GNU_SOURCE -I. -Ilib $(pkg-config --cflags libcjson openblas) \
	-o "$work/train_step" bench/train_step.c "$O/build/model/libftkmodel.a" \
	"$O/build/lib/libftk.a" $(pkg-config --libs libcjson openblas libzstd libxxhash) -lm -pthread
[ -f "$work/model/model.safetensors" ] || $PY bench/train_model.py "$work/model" >/dev/null
export OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE

# field LINE NAME: the value of NAME=... in a space-separated result line
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
