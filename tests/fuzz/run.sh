#!/bin/sh
# Build each libFuzzer target with clang (ASan + UBSan + fuzzer) and run it for
# $FUZZ_SECONDS seconds over its corpus in tests/fuzz/corpus_<name>/.  Crashes
# are written to tests/fuzz/crashes/; each one found must become a regression
# test (tests/cli/ or a unit test) before it is fixed.
set -e
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang}
command -v $CC >/dev/null || { echo "fuzz: clang is needed (make deps installs it)"; exit 1; }
out=${FUZZ_OUT:-/tmp/ftk-fuzz}
mkdir -p "$out" tests/fuzz/crashes
flags="-g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -I. -Ilib $(pkg-config --cflags libcjson)"
libs="$(pkg-config --libs libcjson libzstd libxxhash libutf8proc libpcre2-8) -lm"
lib_src="lib/err.c lib/strbuf.c lib/stream.c lib/json.c lib/record.c prep/validate.c prep/convert.c"
status=0
for t in "$@"; do
	name=$(basename "$t" .c); name=${name#fuzz_}
	echo "fuzz: building $name"
	$CC $flags -o "$out/fuzz_$name" "$t" $lib_src $libs
	mkdir -p "tests/fuzz/corpus_$name" "$out/corpus_$name"
	echo "fuzz: running $name for ${FUZZ_SECONDS}s"
	"$out/fuzz_$name" -max_total_time="$FUZZ_SECONDS" -max_len=65536 -timeout=10 \
		-artifact_prefix=tests/fuzz/crashes/"$name"- "$out/corpus_$name" "tests/fuzz/corpus_$name" \
		> "$out/$name.log" 2>&1 || status=1
	tail -n 2 "$out/$name.log"
done
exit $status
