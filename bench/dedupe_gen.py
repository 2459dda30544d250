#!/usr/bin/env python3
"""Build a JSONL benchmark set for ftk-dedupe from real text.

Sentences come from the shared samples (c4 web text, Alpaca, DPO and KTO
answers); each record is a chat of one user turn and one assistant turn made
of randomly chosen sentences, so records are unique by construction.  Then
duplicates are planted: a share of exact copies of earlier records, and a
share of near copies (one word in 60 of the answer replaced, a Jaccard
similarity of 5-word shingles around 0.85).  Writes the data to argv[2] and
the planted counts as JSON to argv[3].

usage: dedupe_gen.py DATASETS_DIR OUT.jsonl PLANTED.json MEGABYTES [SEED]
"""
import json, random, re, sys

src, out, planted_path, mb = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
texts = []
lf = src + '/llama_factory/'
for line in open(lf + 'c4_demo.jsonl', encoding='utf-8'):
    texts.append(json.loads(line)['text'])
for r in json.load(open(lf + 'alpaca_en_demo.json', encoding='utf-8')):
    texts += [r['instruction'], r['output']]
for name in ('dpo_en_demo.json', 'kto_en_demo.json'):
    for r in json.load(open(lf + name, encoding='utf-8')):
        for k in ('chosen', 'rejected'):
            v = r.get(k)
            if isinstance(v, dict):
                texts.append(v.get('value', ''))
        for m in r.get('conversations', r.get('messages', [])):
            texts.append(m.get('value', m.get('content', '')))
pool = sorted({s.strip() for t in texts for s in re.split(r'(?<=[.!?])\s+', t) if len(s.split()) >= 4})

limit = int(mb * 1e6)
size = 0
n = exact = near = 0
kept = []  # a reservoir of earlier records to copy from
with open(out, 'w', encoding='utf-8') as f:
    while size < limit:
        x = rng.random()
        if x < 0.05 and kept:
            line = rng.choice(kept)
            exact += 1
        elif x < 0.10 and kept:
            rec = json.loads(rng.choice(kept))
            words = rec['messages'][1]['content'].split(' ')
            for i in range(rng.randrange(60), len(words), 60):
                words[i] = 'w%d' % rng.randrange(10 ** 9)
            rec['messages'][1]['content'] = ' '.join(words)
            line = json.dumps(rec, ensure_ascii=False)
            near += 1
        else:
            user = ' '.join(rng.choice(pool) for _ in range(rng.randint(1, 2)))
            answer = ' '.join(rng.choice(pool) for _ in range(rng.randint(8, 16)))
            line = json.dumps({'messages': [{'role': 'user', 'content': user},
                                            {'role': 'assistant', 'content': answer}]},
                              ensure_ascii=False)
            if len(kept) < 20000:
                kept.append(line)
            elif rng.random() < 0.01:
                kept[rng.randrange(len(kept))] = line
        f.write(line + '\n')
        size += len(line.encode('utf-8')) + 1
        n += 1
json.dump({'records': n, 'bytes': size, 'exact_copies': exact, 'near_copies': near,
           'pool_sentences': len(pool)}, open(planted_path, 'w'))
