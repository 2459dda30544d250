#!/bin/sh
# tools/gpu-check.sh: the first run of ftk on a GPU machine, as one command
# that spends a few minutes well (issue 23).  Run from the source tree's root:
#
#   OUT=/some/dir sh tools/gpu-check.sh        (make check-gpu-full does the same)
#
# On a bare machine with nvcc, cuBLAS and a driver but no network and none of
# our -dev libraries: the Debian packages tools/gpu-deps.sh downloaded beside
# the tree (gpu-deps/, or $FTK_GPU_DEPS) are unpacked into a private root
# when pkg-config does not find the libraries on the system.  Then, each step
# with its own time limit and its output under $OUT (summary.txt first):
#   1. the build, -j16, with the CUDA backend for this GPU (-arch=native);
#   2. make check-gpu: the selftest (every op and three QLoRA steps against
#      the CPU) and the dev/cuda programs' validation (quick mode);
#   3. training runs, --device cuda against --device cpu, per-step losses
#      compared: stories260K in fp32 (within 1e-4), bf16 (1e-3), and
#      --attention flash against full on the GPU (1e-5); the bench model's
#      shape (hidden 512, 5 layers, intermediate 1536: 16M parameters with
#      stories260K's 512-token vocabulary, so the bundled shards fit) in fp32;
#   4. dev/cuda timings: the NF4 paths per M (1 to 4096 rows against a
#      14336 x 4096 weight) and attention at T = 512, 2048 and 4096;
#   5. --plan's total against nvidia-smi's peak during a --device cuda run.
# DRY=1 checks the packages without a GPU (unpacks them when needed, links
# and runs a program against every library the build links) and stops
# before the build; FTK_GPU_FORCE_DEPS=1 unpacks the carried packages even
# where the system has the libraries (how it was dry-run where written).
set -u
SRC=$(pwd)
OUT=${OUT:-$SRC/gpu-out}
DEPS=${FTK_GPU_DEPS:-$SRC/gpu-deps}
J=${J:-16}
B=${FTK_GPU_O:-/tmp/ftk-gpu}
ROOT=/tmp/ftk-gpu-root
mkdir -p "$OUT"
S="$OUT/summary.txt"
: > "$S"
t0=$(date +%s)
say() { echo "$*" | tee -a "$S"; }
elapsed() { echo $(($(date +%s) - t0)); }
# run NAME LIMIT CMD...: one step, its output in $OUT/NAME.txt, its status in the summary
run() {
	name=$1 lim=$2
	shift 2
	s=$(date +%s)
	timeout "$lim" "$@" > "$OUT/$name.txt" 2>&1
	rc=$?
	say "step $name: rc=$rc in $(($(date +%s) - s)) s (limit $lim s; at $(elapsed) s)"
	return $rc
}

say "ftk gpu-check at $(date -u +%FT%TZ) in $SRC, output in $OUT"
[ -f Makefile ] && [ -d model ] || { say "run it from the ftk source tree's root"; exit 2; }

# ---------------------------------------------------------------- the machine
{
	nvidia-smi 2>&1
	nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv 2>&1
	command -v nvcc && nvcc --version
	ldd --version 2>&1 | head -n 1
	uname -a
	nproc
	command -v python3 && python3 -c 'import torch; print("torch", torch.__version__)' 2>&1
} > "$OUT/machine.txt" 2>&1
say "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"

# ---------------------------------------------------------------- dependencies
PKGS="libcjson libzstd libpcre2-8 libutf8proc libcurl libxxhash libcrypto openblas"
if [ "${FTK_GPU_FORCE_DEPS:-0}" != 1 ] && command -v pkg-config >/dev/null &&
	pkg-config --exists $PKGS 2>/dev/null &&
	echo '#include <microhttpd.h>
#include <libstemmer.h>
#include <ncurses.h>' | cc -E - >/dev/null 2>&1; then
	say "dependencies: the system's (pkg-config finds them)"
else
	n=$(ls "$DEPS"/*.deb 2>/dev/null | wc -l)
	if [ "$n" = 0 ]; then
		say "dependencies: missing, and no packages in $DEPS (run tools/gpu-deps.sh where there is a network)"
		[ "${DRY:-0}" = 1 ] || exit 1
	fi
	rm -rf "$ROOT"
	mkdir -p "$ROOT/wrap"
	for d in "$DEPS"/*.deb; do
		[ -f "$d" ] || continue
		if command -v dpkg-deb >/dev/null; then
			dpkg-deb -x "$d" "$ROOT"
		else	# not Debian: a .deb is an ar archive holding data.tar.*
			tmp=$(mktemp -d)
			(cd "$tmp" && ar x "$d" && tar -xf data.tar.* -C "$ROOT")
			rm -rf "$tmp"
		fi
	done
	L="$ROOT/usr/lib/x86_64-linux-gnu"
	printf '#!/bin/sh\nexec "%s/usr/bin/pkgconf" "$@"\n' "$ROOT" > "$ROOT/wrap/pkg-config"
	chmod +x "$ROOT/wrap/pkg-config"
	export PATH="$ROOT/wrap:$PATH"
	export PKG_CONFIG_LIBDIR="$L/pkgconfig:$ROOT/usr/share/pkgconfig:$L/openblas-pthread/pkgconfig"
	export PKG_CONFIG_SYSROOT_DIR="$ROOT"
	export CPATH="$ROOT/usr/include:$ROOT/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
	export LIBRARY_PATH="$L:$L/openblas-pthread${LIBRARY_PATH:+:$LIBRARY_PATH}"
	export LD_LIBRARY_PATH="$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	say "dependencies: $n carried packages unpacked into $ROOT ($(du -sm "$ROOT" | cut -f1) MiB)"
fi

if [ "${DRY:-0}" = 1 ]; then
	say "dry run: pkg-config sees: $(pkg-config --modversion $PKGS 2>&1 | tr '\n' ' ')"
	# a program linked against every library the build links, then run
	printf '#include <cjson/cJSON.h>\n#include <zstd.h>\n#include <cblas.h>\n#include <curl/curl.h>\n#include <microhttpd.h>\n#include <libstemmer.h>\n#include <ncurses.h>\nint main(void) { return !(ZSTD_versionNumber() > 0 && cJSON_Version() && curl_version() && MHD_get_version()); }\n' > "$OUT/link.c"
	# shellcheck disable=SC2046
	if cc -o "$OUT/link" "$OUT/link.c" $(pkg-config --cflags --libs $PKGS) -lmicrohttpd -lstemmer \
		-lncursesw >> "$S" 2>&1 && "$OUT/link"; then
		say "dry run: a program linked with every library the build needs runs"
	else
		say "dry run: linking against the libraries FAILED"
	fi
	say "dry run: would build in $B with -j$J, run make check-gpu, the training comparisons, the"
	say "dry run: dev/cuda timings and the plan against nvidia-smi's peak (steps 1 to 5)"
	exit 0
fi

# ---------------------------------------------------------------- 1. build
run build 240 make O="$B" -j"$J" CUDA=1 NVCC_ARCH=-arch=native all cuda || {
	tail -n 30 "$OUT/build.txt" >> "$S"
	exit 1
}
BIN="$B/bin"
export PATH="$BIN:$PATH"

# ---------------------------------------------------------------- 2. check-gpu
run check-gpu 150 make O="$B" -j"$J" CUDA=1 NVCC_ARCH=-arch=native check-gpu
grep -E '^(PASS|FAIL)|FAIL$|dev/cuda: ' "$OUT/check-gpu.txt" | head -n 40 >> "$S"
say "selftest: $(grep -c ' ok$' "$OUT/check-gpu.txt") lines ok (290 expected)"

# ---------------------------------------------------------------- 3. training
M="$SRC/datasets/models/stories260K"
D="$SRC/tests/fixtures/trainer/shards-task/train"
W="$OUT/runs"
mkdir -p "$W"
train() {	# NAME DEVICE MODEL SEQ BATCH STEPS [more options]
	n=$1 dev=$2 mod=$3 seq=$4 bat=$5 st=$6
	shift 6
	rm -rf "${W:?}/$n"
	ftk-train --model "$mod" --data "$D" --out "$W/$n" --device "$dev" --seq-len "$seq" \
		--batch "$bat" --max-steps "$st" --seed 7 -q "$@" > "$W/$n.log" 2>&1
}
# the largest relative difference of the per-step losses of two runs
cmp_losses() {
	paste -d ' ' "$W/$1/metrics.jsonl" "$W/$2/metrics.jsonl" 2>/dev/null |
		sed -n 's/.*"loss":\([^,]*\),.*"loss":\([^,]*\),.*/\1 \2/p' |
		awk -v tol="$3" -v what="$1 vs $2" '
			{ d = $1 - $2; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2); if (r > m) m = r; n++ }
			END { printf "losses %s: %d steps, max rel diff %.2e (tol %s) %s\n", what, n, m, tol,
			      n > 0 && m <= tol ? "ok" : "FAIL" }'
}
{
	s=$(date +%s)
	train cpu-fp32 cpu "$M" 128 4 20 && train cuda-fp32 cuda "$M" 128 4 20
	cmp_losses cuda-fp32 cpu-fp32 1e-4
	train cpu-bf16 cpu "$M" 128 4 20 --precision bf16 && train cuda-bf16 cuda "$M" 128 4 20 --precision bf16
	cmp_losses cuda-bf16 cpu-bf16 1e-3
	train cuda-full cuda "$M" 256 4 20 --attention full && train cuda-flash cuda "$M" 256 4 20 --attention flash
	cmp_losses cuda-flash cuda-full 1e-5
	echo "stories260K runs: $(($(date +%s) - s)) s"
	# the bench model's shape with stories260K's vocabulary and tokenizer
	if python3 -c 'import numpy' 2>/dev/null; then
		BM="$W/bench-model"
		python3 "$SRC/bench/train_model.py" "$BM" 512 5 8 4 1536 512 >/dev/null &&
			cp "$M"/tokenizer.json "$M"/tokenizer_config.json "$M"/special_tokens_map.json "$BM"/
		train bench-cpu cpu "$BM" 256 4 10 && train bench-cuda cuda "$BM" 256 4 10
		cmp_losses bench-cuda bench-cpu 1e-4
		grep -h tokens_per_s "$W/bench-cuda/metrics.jsonl" | tail -n 1 | sed 's/^/bench-cuda last step: /'
		grep -h tokens_per_s "$W/bench-cpu/metrics.jsonl" | tail -n 1 | sed 's/^/bench-cpu last step: /'
	else
		echo "bench model: NOT RUN (no python3 with numpy to write it)"
	fi
} > "$OUT/training.txt" 2>&1
say "step training: at $(elapsed) s"
grep -E '^losses|NOT RUN|last step' "$OUT/training.txt" >> "$S"

# ---------------------------------------------------------------- 4. timings
DC="$B/build/dev-cuda"
run nf4-timing 90 "$DC/nf4_matmul" 14336 4096
run attention-timing 120 "$DC/attention" 512 2048 4096
for p in crossentropy rmsnorm_forward rows; do
	run "$p-timing" 30 "$DC/$p"
done

# ---------------------------------------------------------------- 5. plan vs peak
{
	o="--model $M --data $D --device cuda --seq-len 256 --batch 8 --attention full"
	# shellcheck disable=SC2086
	ftk-train $o --plan
	nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem.csv" &
	sm=$!
	base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n 1)
	# shellcheck disable=SC2086
	ftk-train $o --out "$W/plan-run" --max-steps 5 -q
	kill "$sm"
	peak=$(sort -n "$OUT/mem.csv" | tail -n 1)
	echo "nvidia-smi: before ${base} MiB, peak ${peak} MiB, the run's $((peak - base)) MiB"
} > "$OUT/plan.txt" 2>&1
say "plan: $(grep 'total per process' "$OUT/plan.txt" | sed 's/  */ /g')"
say "$(grep '^nvidia-smi' "$OUT/plan.txt")"
say "done in $(elapsed) s"
