#!/bin/sh
# What each ftk-scrub detector costs: CPU seconds and MB/s of ftk-scrub with
# one --types at a time, all types, and a grep -P e-mail pass over the same
# file, with ratios to grep measured in the same run.
#
#   sh bench/scrub.sh [MB]     # default 50; the file is bench/filter.sh's, built in /tmp
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
MB=${1:-50}
BIN=${FTK_BIN:-$SRC/bin}
[ -x "$BIN/ftk-scrub" ] || BIN=$(dirname "$(command -v ftk-scrub)")
data=/tmp/ftk-bench-filter-$MB.jsonl
[ -s "$data" ] || FTK_BIN="$BIN" sh "$SRC/bench/filter.sh" "$MB" > /dev/null
bytes=$(wc -c < "$data")
tmp=$(mktemp -d /tmp/ftk-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cpu() { # command... -> CPU seconds (user + sys); output to a file, not /dev/null
	/usr/bin/time -f "%U %S" -o "$tmp/t" "$@" > "$tmp/out" || true
	awk '{ print $1 + $2 }' "$tmp/t"
}
echo "input: $data, $bytes bytes"
g=$(cpu grep -cP '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}' "$data")
printf '%-28s %7s %9s %s\n' "" "cpu s" "MB/s" "ratio to grep -P"
printf '%-28s %7.2f %9.1f\n' "grep -cP e-mail pattern" "$g" "$(echo "$bytes $g" | awk '{ print $1 / ($2 > 0.005 ? $2 : 0.005) / 1e6 }')"
for t in EMAIL PHONE IPV4 IPV6 CREDIT_CARD IBAN SSN PRIVATE_KEY JWT AWS_KEY GITHUB_TOKEN \
	SLACK_TOKEN URL_CREDENTIALS all; do
	if [ $t = all ]; then c=$(cpu "$BIN/ftk-scrub" -q "$data")
	else c=$(cpu "$BIN/ftk-scrub" -q --types $t "$data"); fi
	echo "$t $c $g $bytes" | awk '{ c = $2 > 0.005 ? $2 : 0.005
		printf "%-28s %7.2f %9.1f %.3fx\n", "ftk-scrub --types " $1, $2, $4 / c / 1e6, $3 / c }'
done
