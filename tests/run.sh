#!/bin/sh
# Run every test: the unit suites given as arguments (check, fork mode) and
# every CLI case under tests/cli/.  Prints one line per suite or case and a
# closing "N passed, N failed" line; exits 1 when anything failed.
#
# A CLI case is a folder tests/cli/<name>/ holding:
#   cmd           a shell script, run by sh in a fresh temporary directory with
#                 $FTK_BIN first on PATH; $SRC is the source tree, $CASE the
#                 case folder, $FIX tests/fixtures
#   expected.out  its exact standard output   (missing: must be empty)
#   expected.err  its exact standard error    (missing: must be empty)
#   expected.rc   its exit status             (missing: 0)
#   nosan         present when the case is too slow under sanitizers (skipped
#                 with SAN=1, and said so)
#   requires      a shell script; when it exits non-zero the case is skipped
#                 and its first line (a "# needs ..." comment) is printed: for
#                 cases that need OpenMPI or a GPU
# Set UPDATE=1 to write the expected files from what the commands did (then
# read every diff before committing it).
#
# T=word limits the run to suites and cases whose names contain word.
SRC=$(cd "$(dirname "$0")/.." && pwd)
export SRC
export FIX="$SRC/tests/fixtures"
export PATH="$FTK_BIN:$PATH"
export CK_FORK=yes
export LC_ALL=C.UTF-8
unset FTK_LEDGER FTK_RUN
# make check inside a Slurm job: ledger entries would carry its ids (lib/ledger.c)
unset SLURM_JOB_ID SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID
if [ "$SAN" = 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
pass=0
fail=0
skip=0
failed_names=""
tmproot=$(mktemp -d "${TMPDIR:-/tmp}/ftk-test.XXXXXX")
trap 'rm -rf "$tmproot"' EXIT INT TERM

matches() { [ -z "$T" ] || case "$1" in *"$T"*) return 0 ;; *) return 1 ;; esac; }

for u in "$@"; do
	name=$(basename "$u")
	matches "$name" || continue
	out="$tmproot/$name.log"
	if (cd "$tmproot" && timeout 900 "$u") >"$out" 2>&1; then
		res=ok
	else
		res=FAIL
	fi
	summary=$(grep -E '^[0-9]+%: Checks' "$out" | tail -n 1)
	n=$(echo "$summary" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
	f=$(echo "$summary" | sed -n 's/.*Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2/p')
	nf=$(( $(echo "$f" | awk '{print $1+$2}') + 0 ))
	n=${n:-0}
	if [ $res = ok ] && [ "$n" -gt 0 ] && [ $nf = 0 ]; then
		pass=$((pass + n))
		echo "PASS unit/$name ($n checks)"
	else
		[ "$n" -gt 0 ] && pass=$((pass + n - nf))
		[ $nf -gt 0 ] || nf=1
		fail=$((fail + nf))
		failed_names="$failed_names unit/$name"
		echo "FAIL unit/$name"
		grep -vE '^Running suite' "$out" | tail -n 40 | sed 's/^/    /'
	fi
done

for c in "$SRC"/tests/cli/*/; do
	[ -f "$c/cmd" ] || continue
	name=$(basename "$c")
	matches "$name" || continue
	if [ "$SAN" = 1 ] && [ -f "$c/nosan" ]; then
		echo "SKIP cli/$name (too slow under sanitizers: $(cat "$c/nosan"))"
		skip=$((skip + 1))
		continue
	fi
	if [ -f "$c/requires" ] && ! sh "$c/requires" >/dev/null 2>&1; then
		echo "SKIP cli/$name ($(head -n 1 "$c/requires" | sed 's/^# *//'))"
		skip=$((skip + 1))
		continue
	fi
	work="$tmproot/cli-$name"
	mkdir -p "$work"
	CASE=${c%/}
	export CASE
	(cd "$work" && timeout 900 sh "$CASE/cmd") >"$work.out" 2>"$work.err" </dev/null
	rc=$?
	if [ "$UPDATE" = 1 ]; then
		if [ -s "$work.out" ]; then cp "$work.out" "$c/expected.out"; else rm -f "$c/expected.out"; fi
		if [ -s "$work.err" ]; then cp "$work.err" "$c/expected.err"; else rm -f "$c/expected.err"; fi
		if [ $rc != 0 ]; then echo $rc > "$c/expected.rc"; else rm -f "$c/expected.rc"; fi
	fi
	exp_rc=0
	[ -f "$c/expected.rc" ] && exp_rc=$(cat "$c/expected.rc")
	[ -f "$c/expected.out" ] && eo="$c/expected.out" || eo=/dev/null
	[ -f "$c/expected.err" ] && ee="$c/expected.err" || ee=/dev/null
	ok=1
	[ "$rc" = "$exp_rc" ] || ok=0
	cmp -s "$eo" "$work.out" || ok=0
	cmp -s "$ee" "$work.err" || ok=0
	if [ $ok = 1 ]; then
		pass=$((pass + 1))
		echo "PASS cli/$name"
	else
		fail=$((fail + 1))
		failed_names="$failed_names cli/$name"
		echo "FAIL cli/$name (exit $rc, expected $exp_rc)"
		diff -u "$eo" "$work.out" | head -n 30 | sed 's/^/    out: /'
		diff -u "$ee" "$work.err" | head -n 30 | sed 's/^/    err: /'
	fi
done

if [ -n "$failed_names" ]; then
	echo "failed:$failed_names"
fi
if [ $skip -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ $fail = 0 ]
