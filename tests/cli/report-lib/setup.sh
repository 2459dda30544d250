# Two scored runs, people's reviews and a ledger for the ftk-report cases
# (sourced; this folder has no cmd, so it is not a case itself).
#
#   cited-wrong   the ALCE demonstration answers with every citation moved
#                 to another document (n -> n mod 5 + 1): markers everywhere,
#                 support rarely
#   cited-right   the answers as written
#   cited-right/reviews.jsonl   alice and bob's verdicts on three cases
#   ledger.jsonl  priced entries for both runs: people preparing data and
#                 reviewing, training compute, eval API spend
S="$SRC/datasets/suites/alce-demos.json"
A="$SRC/datasets/suites/alce-demos.answers.jsonl"
jq -c '.output |= gsub("\\[(?<n>[0-9])\\]"; "[\((.n | tonumber) % 5 + 1)]")' "$A" > shifted.jsonl
ftk-eval run "$S" --outputs shifted.jsonl -o cited-wrong -q >/dev/null
ftk-eval run "$S" --outputs "$A" -o cited-right -q >/dev/null
cat > cited-right/reviews.jsonl <<'JSONL'
{"ts":"2026-11-23T10:00:00Z","reviewer":"alice","run":"cited-right","id":"eli5_demo_1","sample":0,"verdict":"fail"}
{"ts":"2026-11-23T10:01:00Z","reviewer":"alice","run":"cited-right","id":"eli5_demo_1","sample":0,"verdict":"pass","note":"the passage says it in other words"}
{"ts":"2026-11-23T10:02:00Z","reviewer":"alice","run":"cited-right","id":"eli5_demo_2","sample":0,"verdict":"fail","note":"S2 is <b>not</b> in [2] & co"}
{"ts":"2026-11-23T10:03:00Z","reviewer":"bob","run":"cited-right","id":"eli5_demo_3","sample":0,"verdict":"unsure"}
{"ts":"2026-11-23T10:04:00Z","reviewer":"bob","run":"cited-right","id":"asqa_demo_0","sample":0,"verdict":"pass"}
JSONL
cat > ledger.jsonl <<'JSONL'
{"ts":"2026-11-20T09:00:00Z","run":"cited-wrong","stage":"prep","kind":"human","who":"alice","hours":2,"usd":160}
{"ts":"2026-11-20T12:00:00Z","run":"cited-wrong","stage":"train","kind":"compute","device":"A100-80GB","hours":1.5,"usd":5.5}
{"ts":"2026-11-20T14:00:00Z","run":"cited-wrong","stage":"eval","kind":"api","model":"gpt-4o-mini","tokens_in":200000,"tokens_out":20000,"usd":0.042}
{"ts":"2026-11-21T09:00:00Z","run":"cited-right","stage":"prep","kind":"human","who":"alice","hours":3,"usd":240}
{"ts":"2026-11-21T09:30:00Z","run":"cited-right","stage":"prep","kind":"compute","tool":"ftk-dedupe","device":"cpu","hours":0.1,"usd":0.01}
{"ts":"2026-11-21T12:00:00Z","run":"cited-right","stage":"train","kind":"compute","device":"A100-80GB","gpus":2,"hours":2,"usd":14.68}
{"ts":"2026-11-21T14:00:00Z","run":"cited-right","stage":"eval","kind":"api","model":"gpt-4o-mini","tokens_in":200000,"tokens_out":20000,"usd":0.042}
{"ts":"2026-11-23T10:05:00Z","run":"cited-right","stage":"review","kind":"human","tool":"ftk-review","who":"alice","hours":0.25,"usd":20}
JSONL
