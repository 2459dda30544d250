#!/bin/sh
# bench/dedupe_merge_memory.sh: the memory of `ftk-dedupe --merge` (the one
# job of a sharded dedupe that sees every record) per record, at 10 million
# records, against the model docs/scale.md plans a cluster with, and against
# awk '!seen[$0]++' on the same records (the simplest exact dedupe, which
# holds every distinct line).
#
# prep/dedupe.h's model: resolve holds 40 bytes of metadata and 12 bytes a
# band per record (14 bands: 208 bytes), plus the union-find and the
# candidate pairs, which grow with the duplicates, not the records.  The
# figure that scales is the growth of peak RSS between 1 M and 10 M records
# divided by the 9 M records between them: fixed costs (the binary, the
# allocator's arenas, the read buffers) cancel out.
#
# Data: short synthetic chat records (8 words from a 4096-word vocabulary and
# a serial number, so that the records are distinct and few are near
# duplicates), signed in near mode (14 x 8 bands) into 4 signature files as
# 4 array tasks would.  Signing 10 M records takes a few minutes on 2 cores;
# the signature files are kept in $DIR for another run.
#
# MERGE_BENCH_META=1 gives each record the provenance ftk-convert writes
# (meta.source and meta.line), which the signatures carry as the record's
# origin: the merge must not hold it per record (prep/dedupe.h), so the
# bytes a record should come out the same with and without it.
#
#   sh bench/dedupe_merge_memory.sh            uses bin/ (make), 10 M records
#   FTK_BIN=/tmp/o/bin MERGE_BENCH_RECORDS=2000000 sh bench/dedupe_merge_memory.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FTK_BIN:-$SRC/bin}
DIR=${MERGE_BENCH_DIR:-/tmp/ftk-bench-merge}
N=${MERGE_BENCH_RECORDS:-10000000}
META=${MERGE_BENCH_META:-0}
SMALL=$((N / 10))
mkdir -p "$DIR"

# gen FILE FIRST COUNT: COUNT records numbered from FIRST
gen() {
	awk -v first="$2" -v n="$3" -v meta="$META" 'BEGIN {
		srand(first + 1)
		for (i = 0; i < n; i++) {
			s = ""
			for (w = 0; w < 8; w++)
				s = s sprintf("w%d ", int(rand() * 4096))
			m = meta == "1" ? sprintf(",\"meta\":{\"source\":\"raw/part-%05d.jsonl\",\"line\":%d}", int((first + i) / 100000), (first + i) % 100000 + 1) : ""
			printf "{\"messages\":[{\"role\":\"user\",\"content\":\"%s%d\"},{\"role\":\"assistant\",\"content\":\"ok\"}]%s}\n", s, first + i, m
		}
	}' > "$1"
}

# four shards of N/4 records; the first tenth of each shard makes the small set
q=$((N / 4))
for i in 0 1 2 3; do
	sig=$DIR/n$N-m$META-$i.sig
	[ -s "$sig" ] && continue
	echo "signing shard $i of 4 ($q records) ..."
	gen "$DIR/shard.jsonl" $((i * q)) "$q"
	"$BIN/ftk-dedupe" -q --mode near --signatures -o "$sig" "$DIR/shard.jsonl"
	head -n $((q / 10)) "$DIR/shard.jsonl" > "$DIR/small-$i.jsonl"
	"$BIN/ftk-dedupe" -q --mode near --signatures -o "$DIR/n$N-m$META-small-$i.sig" "$DIR/small-$i.jsonl"
	[ "$i" = 0 ] && cp "$DIR/shard.jsonl" "$DIR/awk-quarter.jsonl"
	rm -f "$DIR/shard.jsonl"
done

# peak RSS in KB, wall seconds and CPU seconds of a command
rss() {
	/usr/bin/time -f "%M %e %U %S" -o "$DIR/time.txt" sh -c "$*" > /dev/null 2> "$DIR/err.txt" ||
		{ cat "$DIR/err.txt" >&2; exit 1; }
	cat "$DIR/time.txt"
}
echo "cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
set -- $(rss "'$BIN/ftk-dedupe' -q --merge -o '$DIR/remove-small.jsonl' '$DIR'/n$N-m$META-small-[0-3].sig")
small_kb=$1 small_s=$2 small_cpu=$(echo "$3 $4" | awk '{ print $1 + $2 }')
set -- $(rss "'$BIN/ftk-dedupe' -q --merge -o '$DIR/remove.jsonl' '$DIR'/n$N-m$META-[0-3].sig")
big_kb=$1 big_s=$2 big_cpu=$(echo "$3 $4" | awk '{ print $1 + $2 }')
# awk on a quarter of the records and on a fortieth: the same growth measure
head -n $((q / 10)) "$DIR/awk-quarter.jsonl" > "$DIR/awk-small.jsonl"
set -- $(rss "awk '!seen[\$0]++' '$DIR/awk-quarter.jsonl'")
awk_kb=$1
set -- $(rss "awk '!seen[\$0]++' '$DIR/awk-small.jsonl'")
awk_small_kb=$1
removed=$(wc -l < "$DIR/remove.jsonl")
awk -v N="$N" -v S="$SMALL" -v b="$big_kb" -v s="$small_kb" -v bs="$big_s" -v ss="$small_s" \
    -v q="$q" -v a="$awk_kb" -v as="$awk_small_kb" -v rm="$removed" \
    -v bc="$big_cpu" -v sc="$small_cpu" 'BEGIN {
	per = (b - s) * 1024 / (N - S)
	aper = (a - as) * 1024 / (q - q / 10)
	printf "merge, %d records: %.0f MB peak RSS, %.1f s (%.1f CPU-s); %d records: %.0f MB, %.1f s (%.1f CPU-s); %d to remove\n",
		N, b / 1024, bs, bc, S, s / 1024, ss, sc, rm
	printf "merge: %.2f CPU-microseconds a record (growth from %d to %d records)\n",
		(bc - sc) * 1e6 / (N - S), S, N
	printf "merge: %.0f bytes a record (growth from %d to %d records); the model: 208 (40 + 14 bands x 12)\n",
		per, S, N
	printf "merge, measured / model: %.2f\n", per / 208
	printf "awk !seen[$0]++: %.0f bytes a record (growth from %d to %d records)\n", aper, q / 10, q
	printf "merge / awk, bytes a record: %.2f\n", per / aper
}'
