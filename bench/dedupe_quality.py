#!/usr/bin/env python3
"""Near-duplicate quality of ftk-dedupe, measured against brute force.

Builds a sample of real text (sentences of the shared c4, Alpaca, DPO and KTO
samples recombined into records, as bench/dedupe_gen.py does), plants near
copies with every k-th word replaced for k from 3 to 80 (so true similarities
spread over the whole range around the threshold), computes the true Jaccard
similarity of the word 5-gram shingle sets of ALL pairs by brute force, and
compares with what `ftk-dedupe --mode near --threshold J --clusters` reports.

The shingles are computed here independently of ftk: Python's unicodedata for
NFC and categories (lower case; punctuation and symbols to spaces; split at
white space), 5 words joined by one space, as sets of strings.

Metrics at the threshold J (default 0.8):
  precision  of the removals: the share of removed records whose true Jaccard
             to the record ftk kept in their place (their "of") is >= J, so
             no removal is unjustified
  recall     of the near-duplicate pairs: the share of true pairs (Jaccard
             >= J) that the output no longer holds both of
  records    (for reference) a record is a true duplicate when some other
             record has Jaccard >= J with it; ftk's are the cluster members
Targets (issue 4): precision >= 0.98 and recall >= 0.90 at J = 0.8.

usage: dedupe_quality.py [--bin DIR] [--n RECORDS] [--threshold J] [--fast] [--seed S]
"""
import argparse, itertools, json, os, random, re, subprocess, sys, tempfile, time, unicodedata

ap = argparse.ArgumentParser()
here = os.path.dirname(os.path.abspath(__file__))
ap.add_argument('--bin', default=os.path.join(here, '..', 'bin'))
ap.add_argument('--datasets', default=None)
ap.add_argument('--n', type=int, default=2400)
ap.add_argument('--threshold', type=float, default=0.8)
ap.add_argument('--fast', action='store_true')
ap.add_argument('--seed', type=int, default=7)
args = ap.parse_args()
ds = args.datasets or os.path.join(here, '..', '..', 'shared', 'datasets')
if not os.path.isdir(os.path.join(ds, 'llama_factory')):
    ds = os.path.join(here, '..', 'datasets')
rng = random.Random(args.seed)

# ---- the sample
lf = os.path.join(ds, 'llama_factory')
texts = [json.loads(l)['text'] for l in open(os.path.join(lf, 'c4_demo.jsonl'), encoding='utf-8')]
for r in json.load(open(os.path.join(lf, 'alpaca_en_demo.json'), encoding='utf-8')):
    texts += [r['instruction'], r['output']]
pool = sorted({s.strip() for t in texts for s in re.split(r'(?<=[.!?])\s+', t) if len(s.split()) >= 4})
n_base = args.n * 3 // 4
records = []
for _ in range(n_base):
    records.append(' '.join(rng.choice(pool) for _ in range(rng.randint(3, 12))))
while len(records) < args.n:
    words = rng.choice(records[:n_base]).split(' ')
    k = rng.randint(3, 80)
    for i in range(rng.randrange(k), len(words), k):
        words[i] = 'z%d' % rng.randrange(10 ** 9)
    records.append(' '.join(words))
rng.shuffle(records)

# ---- brute force
def shingles(t, n=5):
    t = unicodedata.normalize('NFC', t).lower()
    w = ''.join(' ' if unicodedata.category(c)[0] in 'PSZ' or unicodedata.category(c) == 'Cc'
                else c for c in t).split()
    return frozenset(' '.join(w[i:i + n]) for i in range(max(1, len(w) - n + 1)))

t0 = time.time()
sets = [shingles(t) for t in records]
J = args.threshold
true_pairs = set()
for i, j in itertools.combinations(range(len(sets)), 2):
    a, b = sets[i], sets[j]
    inter = len(a & b)
    if inter:
        s = inter / (len(a) + len(b) - inter)
        if s >= J:
            true_pairs.add((i, j))
npairs = len(sets) * (len(sets) - 1) // 2
brute_s = time.time() - t0

# ---- ftk-dedupe
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, 'sample.jsonl')
    with open(path, 'w', encoding='utf-8') as f:
        for t in records:
            f.write(json.dumps({'text': t}, ensure_ascii=False) + '\n')
    cmd = [os.path.join(args.bin, 'ftk-dedupe'), '-q', '--mode', 'near', '--threshold', str(J),
           '--clusters', os.path.join(d, 'c.jsonl'), '--rejects', os.path.join(d, 'r.jsonl'), path]
    if args.fast:
        cmd.insert(2, '--fast')
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    clusters = [json.loads(l) for l in open(os.path.join(d, 'c.jsonl'))]
    rejects = [json.loads(l) for l in open(os.path.join(d, 'r.jsonl'))]

pred_records = set()
for c in clusters:
    pred_records.add(c['kept']['line'] - 1)
    pred_records.update(m['line'] - 1 for m in c['removed'])
removed = {r['line'] - 1 for r in rejects}
true_records = {i for p in true_pairs for i in p}

def jac(i, j):
    a, b = sets[i], sets[j]
    return len(a & b) / len(a | b)
removed_sims = [(jac(r['line'] - 1, r['of']['line'] - 1), r['similarity']) for r in rejects]
ok_removed = sum(1 for t, _ in removed_sims if t >= J)
sim_err = max((abs(t - s) for t, s in removed_sims), default=0)
precision = ok_removed / len(removed_sims) if removed_sims else 1.0
left = [p for p in true_pairs if p[0] not in removed and p[1] not in removed]
recall = 1 - len(left) / len(true_pairs) if true_pairs else 1.0
tp = len(pred_records & true_records)
rp = tp / len(pred_records) if pred_records else 1.0
rr = tp / len(true_records) if true_records else 1.0

print('sample: %d records (%d planted near copies), %d pairs compared by brute force in %.1f s'
      % (len(records), args.n - n_base, npairs, brute_s))
print('threshold %.2f%s: %d true pairs (Jaccard >= %.2f); ftk removed %d records'
      % (J, ' (--fast)' if args.fast else '', len(true_pairs), J, len(removed)))
print('precision %.4f  (%d of %d removals have true Jaccard >= %.2f to the kept record; '
      'largest |reported - true similarity| %.4f)' % (precision, ok_removed, len(removed_sims), J, sim_err))
print('recall    %.4f  (%d of %d true pairs still both in the output)' % (recall, len(left), len(true_pairs)))
print('records:  precision %.4f recall %.4f (%d true duplicate records, %d in ftk clusters)'
      % (rp, rr, len(true_records), len(pred_records)))
print('targets: precision >= 0.98, recall >= 0.90: %s'
      % ('met' if precision >= 0.98 and recall >= 0.90 else 'NOT met'))
