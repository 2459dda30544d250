#!/bin/sh
# Run every test: the unit suites given as arguments (check, fork mode) and
# every CLI case under tests/cli/.  Prints one line per suite or case, in that
# order whatever order they finish in, and a closing "N passed, N failed" line;
# exits 1 when anything failed.
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
# Every case runs with FTK_CPU_GUARD=1 (model/backend.h: the CPU backend's
# memory faults when the host touches it outside an op, as a GPU's would be
# wrong to), unless FTK_CPU_GUARD=0 is set for the run.
# Set UPDATE=1 to write the expected files from what the commands did (then
# read every diff before committing it).
#
# T=word limits the run to suites and cases whose names contain word;
# T="w1 w2" to those containing any of the words.
# J=N runs N at once (default: the number of cores; J=1 runs them in turn).
# Every suite and case has its own temporary directory and uses ephemeral
# ports, so they do not see each other.
SRC=$(cd "$(dirname "$0")/.." && pwd)
export SRC
export FIX="$SRC/tests/fixtures"
export PATH="$FTK_BIN:$PATH"
export CK_FORK=yes
# check kills a test after its tcase timeout (default 4 s); suites run side by
# side and under sanitizers are slower than alone, and a timing is no test here
# (a hang is still caught by the 900 s guard below)
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}
export LC_ALL=C.UTF-8
unset FTK_LEDGER FTK_RUN
# make check inside a Slurm job: ledger entries would carry its ids (lib/ledger.c)
unset SLURM_JOB_ID SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID
if [ "$SAN" = 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

# ---- one suite or case: "run.sh --one unit|cli PATH RES" writes RES.txt (the
# lines to print) and RES.res ("passed failed skipped"), then RES.done.
run_unit() {	# $1 the suite binary, $2 result prefix
	name=$(basename "$1")
	out="$2.log"
	# a suite opts in to guard mode itself (FTK_TEST_MAIN_GUARDED): most
	# read the CPU backend's memory on purpose
	if (cd "$tmpdir" && unset FTK_CPU_GUARD && timeout 900 "$1") >"$out" 2>&1; then
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
		echo "PASS unit/$name ($n checks)" >"$2.txt"
		echo "$n 0 0" >"$2.res"
	else
		p=0
		[ "$n" -gt 0 ] && p=$((n - nf))
		[ $nf -gt 0 ] || nf=1
		{
			echo "FAIL unit/$name"
			grep -vE '^Running suite' "$out" | tail -n 40 | sed 's/^/    /'
		} >"$2.txt"
		echo "$p $nf 0" >"$2.res"
	fi
}

run_cli() {	# $1 the case folder, $2 result prefix
	c=${1%/}
	name=$(basename "$c")
	if [ "$SAN" = 1 ] && [ -f "$c/nosan" ]; then
		echo "SKIP cli/$name (too slow under sanitizers: $(cat "$c/nosan"))" >"$2.txt"
		echo "0 0 1" >"$2.res"
		return
	fi
	if [ -f "$c/requires" ] && ! sh "$c/requires" >/dev/null 2>&1; then
		echo "SKIP cli/$name ($(head -n 1 "$c/requires" | sed 's/^# *//'))" >"$2.txt"
		echo "0 0 1" >"$2.res"
		return
	fi
	work="$tmpdir/cli-$name"
	mkdir -p "$work"
	CASE=$c
	export CASE
	(cd "$work" && FTK_CPU_GUARD=${FTK_CPU_GUARD:-1} timeout 900 sh "$CASE/cmd") \
		>"$work.out" 2>"$work.err" </dev/null
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
		echo "PASS cli/$name" >"$2.txt"
		echo "1 0 0" >"$2.res"
	else
		{
			echo "FAIL cli/$name (exit $rc, expected $exp_rc)"
			diff -u "$eo" "$work.out" | head -n 30 | sed 's/^/    out: /'
			diff -u "$ee" "$work.err" | head -n 30 | sed 's/^/    err: /'
		} >"$2.txt"
		echo "0 1 0" >"$2.res"
	fi
}

if [ "$1" = --one ]; then
	tmpdir=$(mktemp -d "$TESTROOT/t.XXXXXX")
	case "$2" in
	unit) run_unit "$3" "$4" ;;
	*) run_cli "$3" "$4" ;;
	esac
	rm -rf "$tmpdir"
	: >"$4.done"
	exit 0
fi

# ---- the whole run
TESTROOT=$(mktemp -d "${TMPDIR:-/tmp}/ftk-test.XXXXXX")
export TESTROOT
trap 'rm -rf "$TESTROOT"; exit 1' INT TERM
trap 'rm -rf "$TESTROOT"' EXIT
J=${J:-$(nproc 2>/dev/null || echo 2)}

matches() {
	[ -z "$T" ] && return 0
	for w in $T; do
		case "$1" in *"$w"*) return 0 ;; esac
	done
	return 1
}

list="$TESTROOT/list"
: >"$list"
i=0
for u in "$@"; do
	matches "$(basename "$u")" || continue
	i=$((i + 1))
	echo "unit $u $TESTROOT/$(printf %04d $i)" >>"$list"
done
for c in "$SRC"/tests/cli/*/; do
	[ -f "$c/cmd" ] || continue
	matches "$(basename "$c")" || continue
	i=$((i + 1))
	echo "cli $c $TESTROOT/$(printf %04d $i)" >>"$list"
done
total=$i

xargs -P "$J" -L 1 sh "$0" --one <"$list" &
runner=$!

pass=0
fail=0
skip=0
failed_names=""
k=0
while [ $k -lt $total ]; do
	k=$((k + 1))
	r="$TESTROOT/$(printf %04d $k)"
	while [ ! -f "$r.done" ]; do
		kill -0 $runner 2>/dev/null || [ -f "$r.done" ] || { echo "run.sh: the runner died" >&2; exit 1; }
		sleep 0.1
	done
	cat "$r.txt"
	read -r p f s <"$r.res"
	pass=$((pass + p))
	fail=$((fail + f))
	skip=$((skip + s))
	[ "$f" -gt 0 ] && failed_names="$failed_names $(head -n 1 "$r.txt" | awk '{print $2}')"
done
wait $runner

if [ -n "$failed_names" ]; then
	echo "failed:$failed_names"
fi
if [ $skip -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ $fail = 0 ]
