#!/bin/sh
# Precision and recall of ftk-scrub per PII type on the labelled set
# (tests/fixtures/pii/labelled.jsonl.zst, made by tests/fixtures/pii/gen.py),
# and on a held-out set drawn by the same recipe with another seed.
#
#   sh bench/pii_quality.sh            # uses ftk-scrub from $FTK_BIN, ./bin or PATH
#
# Exits 1 when a set misses the targets (overall recall >= 0.98, precision >= 0.95).
set -e
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FTK_BIN:-$SRC/bin}
[ -x "$BIN/ftk-scrub" ] || BIN=$(dirname "$(command -v ftk-scrub)")
PY=/usr/bin/python3
[ -x $PY ] || PY=python3
tmp=$(mktemp -d /tmp/ftk-pii.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
zstd -q -d -c "$SRC/tests/fixtures/pii/labelled.jsonl.zst" > "$tmp/labelled.jsonl"
$PY "$SRC/tests/fixtures/pii/gen.py" 7 > "$tmp/heldout.jsonl"
rc=0
for set in labelled heldout; do
	echo "== $set set: $BIN/ftk-scrub --report --field text"
	"$BIN/ftk-scrub" -q --report --field text "$tmp/$set.jsonl" > "$tmp/$set.report"
	$PY "$SRC/bench/pii_quality.py" "$tmp/$set.jsonl" "$tmp/$set.report" || rc=1
done
exit $rc
