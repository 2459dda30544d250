#!/bin/sh
# Build each libFuzzer target with clang (ASan + UBSan + fuzzer) and run it for
# $FUZZ_SECONDS seconds over its corpus in tests/fuzz/corpus_<name>/.  Crashes
# are written to tests/fuzz/crashes/; each one found must become a regression
# test (tests/cli/ or a unit test) before it is fixed.
#
# Every target links all of lib/ (libftk) and prep/validate.c, prep/convert.c;
# a target that needs more names the files in a comment line of its own
# source, "fuzz-sources: model/safetensors.c ...", so nothing is listed here.
# The closing line of each run (libFuzzer's "Done N runs in S second(s)") is
# printed, so the runs each target made can be read off CI's log.
set -e
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
command -v $CC >/dev/null || { echo "fuzz: clang is needed (make deps installs it)"; exit 1; }
out=${FUZZ_OUT:-/tmp/ftk-fuzz}
mkdir -p "$out" tests/fuzz/crashes
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I. -Ilib $(pkg-config --cflags libcjson)"
libs="$(pkg-config --libs libcjson libzstd libxxhash libutf8proc libpcre2-8 libcurl yaml-0.1) -lm -pthread"
lib_src="$(ls lib/*.c) prep/validate.c prep/convert.c"
status=0
for t in "$@"; do
	name=$(basename "$t" .c); name=${name#fuzz_}
	extra=$(sed -n 's/^.*fuzz-sources:\(.*\)$/\1/p' "$t")
	echo "fuzz: building $name"
	$CC $flags -o "$out/fuzz_$name" "$t" $lib_src $extra $libs
	mkdir -p "tests/fuzz/corpus_$name" "$out/corpus_$name"
	echo "fuzz: running $name for ${FUZZ_SECONDS}s"
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$out/fuzz_$name" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -timeout=10 -rss_limit_mb=2560 \
		-artifact_prefix=tests/fuzz/crashes/"$name"- "$out/corpus_$name" "tests/fuzz/corpus_$name" \
		> "$out/$name.log" 2>&1 || status=1
	tail -n 2 "$out/$name.log"
done
exit $status
