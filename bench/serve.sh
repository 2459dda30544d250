#!/bin/sh
# ftk-serve throughput for stories260K with 1, 4 and 16 concurrent clients,
# measured with wrk (Debian's) on loopback, against a baseline measured in the
# same run: the same requests answered in-process by ftk-generate (tokens/s of
# generation alone), so the ratio is what HTTP, JSON and the queue cost.
#
#   bench/serve.sh [seconds per level, default 10]
set -e
cd "$(dirname "$0")/.."
BIN=${FTK_BIN:-bin}
SECS=${1:-10}
M=datasets/models/stories260K
W=${WORKERS:-2}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
command -v wrk >/dev/null || { echo "bench/serve.sh needs wrk (apt-get install wrk)"; exit 1; }
"$BIN/ftk-serve" -q --model $M --port 0 --port-file "$work/port" --workers "$W" --queue 1000 &
pid=$!
while [ ! -s "$work/port" ]; do sleep 0.1; done
U=http://127.0.0.1:$(cat "$work/port")
BODY='{"model":"stories260K","messages":[{"role":"user","content":"Tell me a story about Lily."}],"temperature":0,"max_tokens":64}'
ntok=$(curl -s --data-binary "$BODY" "$U/v1/chat/completions" | jq .usage.completion_tokens)
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA
echo "ftk-serve, stories260K, $W workers, $ntok completion tokens per request, ${SECS}s per level"
for c in 1 4 16; do
	rps=$(wrk -t 1 -c $c -d "${SECS}s" -s "$work/post.lua" "$U/v1/chat/completions" | awk '/Requests\/sec/ {print $2}')
	echo "clients $c: $rps requests/s, $(echo "$rps * $ntok" | bc) tokens/s"
done
# in-process baseline: the same prompt 200 times through ftk-generate
yes "$(echo "$BODY" | jq -c '{messages}')" | head -n 200 > "$work/prompts.jsonl"
s=$(date +%s.%N)
"$BIN/ftk-generate" -q --model $M --quant none --max-tokens 64 < "$work/prompts.jsonl" > /dev/null
e=$(date +%s.%N)
echo "ftk-generate in-process, one thread: $(echo "200 * $ntok / ($e - $s)" | bc) tokens/s"
