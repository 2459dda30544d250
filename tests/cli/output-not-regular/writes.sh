#!/bin/bash
# The body of the case, run as the caller and as an unprivileged user: outputs
# that are not regular files are written through, never replaced.  $2 is the
# folder of device names: /dev, or (as root) a copy made in the work folder,
# so that a regression replaces the copy and not the machine's /dev entries.
cd "$1" || exit 1
DEV=$2
show() { sed "s|$DEV/|DEV/|g"; }
printf '{"text":"a"}\n{"text":"a"}\n{"text":"b"}\n' > in.jsonl
echo "-- --rejects DEV/stdout: the reject reaches standard output"
./ftk dedupe -q --rejects $DEV/stdout -o $DEV/null in.jsonl | jq -c '{line,reason}'
test -L $DEV/stdout && echo "DEV/stdout is still a link"
echo "-- --rejects DEV/stderr"
./ftk dedupe -q --rejects $DEV/stderr in.jsonl 2>&1 >/dev/null | jq -c '{line,reason}'
echo "-- -o DEV/stdout appends to a file opened with >>"
echo first > app.txt
./ftk dedupe -q -o $DEV/stdout in.jsonl >> app.txt
cat app.txt
echo "-- --stats DEV/full fails, and DEV/full stays a device"
./ftk dedupe -q --stats $DEV/full in.jsonl 2>&1 > /dev/null | show
echo "exit ${PIPESTATUS[0]}"
test -c $DEV/full && echo "DEV/full is a character device"
echo "-- -o a named pipe: its reader gets every record"
mkfifo fifo
timeout 10 sh -c "wc -l < fifo" > count &
./ftk dedupe -q -o fifo in.jsonl
wait
cat count
test -p fifo && echo "fifo is still a named pipe"
echo "-- --rejects >(...) (a /dev/fd/N name from bash)"
./ftk dedupe -q --rejects >(wc -l > count2) in.jsonl > /dev/null
echo "exit $?"
wait $!
cat count2
echo "-- -o /dev/fd/9 on a descriptor that is not open"
./ftk dedupe -q -o /dev/fd/9 in.jsonl
echo "exit $?"
echo "-- no temporary left"
ls | grep -c tmp
