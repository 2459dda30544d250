#!/bin/sh
# bench/dedupe.sh: ftk-dedupe's speed and memory against awk and jq + sort -u,
# measured in one run on the same data.
#
# Builds (once, cached) at least 500 MB of chat JSONL from real text in the
# shared datasets (bench/dedupe_gen.py: sentences of c4, Alpaca, DPO and KTO
# recombined into unique records, then 5% exact and 5% near copies planted),
# then times:
#   ftk-dedupe (exact)         parses every record, XXH3-128 of the normalized text
#   ftk-dedupe --mode near     MinHash 14x8 over word 5-grams, verified by Jaccard
#   awk '!seen[$0]++'          byte-identical lines only, no parsing
#   jq -c . | sort -u          parse and re-serialize, then sort (not input order)
# and prints MB/s (wall clock and per CPU-second), peak RSS, the ratios, and
# near mode's resident bytes per record (whole peak, and the growth between
# a tenth of the data and all of it, which leaves out fixed costs).
#
# The machines are shared: quote the ratios, which are measured side by side.
#
#   sh bench/dedupe.sh                      uses bin/ (make) and 520 MB
#   FTK_BIN=/tmp/o/bin DEDUPE_BENCH_MB=600 sh bench/dedupe.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FTK_BIN:-$SRC/bin}
DIR=${DEDUPE_BENCH_DIR:-/tmp/ftk-bench-dedupe}
MB=${DEDUPE_BENCH_MB:-520}
DATASETS=${DATASETS:-$SRC/../shared/datasets}
[ -d "$DATASETS/llama_factory" ] || DATASETS=$SRC/datasets
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
mkdir -p "$DIR"
DATA=$DIR/data.jsonl

need=$((MB * 1000000))
have=$( [ -f "$DATA" ] && wc -c < "$DATA" || echo 0)
if [ "$have" -lt "$need" ]; then
	echo "building $MB MB of JSONL in $DATA ..."
	$PY "$SRC/bench/dedupe_gen.py" "$DATASETS" "$DATA" "$DIR/planted.json" "$MB"
fi
bytes=$(wc -c < "$DATA")
records=$(wc -l < "$DATA")
head -n $((records / 10)) "$DATA" > "$DIR/tenth.jsonl"
tenth_records=$(wc -l < "$DIR/tenth.jsonl")
tenth_bytes=$(wc -c < "$DIR/tenth.jsonl")
echo "data: $bytes bytes, $records records; planted: $(cat "$DIR/planted.json")"
echo "cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# run NAME BYTES COMMAND: wall seconds, CPU seconds, peak RSS (KB) into NAME_*
run() {
	name=$1
	nbytes=$2
	shift 2
	sync
	/usr/bin/time -f "%e %U %S %M" -o "$DIR/time.txt" sh -c "$*" 2> "$DIR/$name.err"
	read -r wall user sys rss < "$DIR/time.txt"
	cpu=$(echo "$user $sys" | awk '{ printf "%.2f", $1 + $2 }')
	eval "${name}_wall=$wall ${name}_cpu=$cpu ${name}_rss=$rss"
	awk -v n="$name" -v b="$nbytes" -v w="$wall" -v c="$cpu" -v r="$rss" 'BEGIN {
		printf "%-12s %8.2f s %8.2f cpu-s %9.1f MB/s %9.1f MB/cpu-s %8.1f MB peak RSS\n",
			n, w, c, b / 1e6 / w, b / 1e6 / c, r / 1024 }'
}

FTK=$BIN/ftk-dedupe
run exact "$bytes" "$FTK -q '$DATA' > '$DIR/exact.out'"
run near "$bytes" "$FTK -q --mode near '$DATA' > '$DIR/near.out'"
run near1 "$bytes" "$FTK -q -j 1 --mode near '$DATA' > '$DIR/near1.out'"
run near10 "$tenth_bytes" "$FTK -q --mode near '$DIR/tenth.jsonl' > /dev/null"
run awk "$bytes" "awk '!seen[\$0]++' '$DATA' > '$DIR/awk.out'"
run jqsort "$bytes" "jq -c . '$DATA' | sort -u > '$DIR/jqsort.out'"

echo
echo "records kept: exact $(wc -l < "$DIR/exact.out"), near $(wc -l < "$DIR/near.out"), awk $(wc -l < "$DIR/awk.out"), jq+sort $(wc -l < "$DIR/jqsort.out") of $records"
cmp -s "$DIR/near.out" "$DIR/near1.out" && echo "near -j $(nproc) and -j 1 keep the same records" || echo "near -j $(nproc) and -j 1 DIFFER"
awk -v ew="$exact_wall" -v ec="$exact_cpu" -v aw="$awk_wall" -v ac="$awk_cpu" \
    -v jw="$jqsort_wall" -v jc="$jqsort_cpu" -v nw="$near_wall" -v n1c="$near1_cpu" -v nc="$near_cpu" \
    -v nr="$near_rss" -v n10r="$near10_rss" -v N="$records" -v N10="$tenth_records" -v B="$bytes" 'BEGIN {
	printf "exact vs awk:       %.2fx the speed (wall), %.2fx per CPU-second\n", aw / ew, ac / ec
	printf "exact vs jq+sort:   %.2fx the speed (wall), %.2fx per CPU-second\n", jw / ew, jc / ec
	printf "near vs awk:        %.2fx the speed (wall)\n", aw / nw
	printf "near, one thread:   %.1f MB per CPU-second (target 50 per core)\n", B / 1e6 / n1c
	printf "near, all threads:  %.1f MB per CPU-second\n", B / 1e6 / nc
	printf "near resident bytes per record: %.0f (peak RSS / records), %.0f (growth from a tenth to all)\n",
		nr * 1024 / N, (nr - n10r) * 1024 / (N - N10)
}'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
