#!/usr/bin/env python3
"""Score ftk-scrub --report against the labelled PII set.

    python3 bench/pii_quality.py LABELLED.jsonl REPORT.jsonl

LABELLED is tests/fixtures/pii/labelled.jsonl (see gen.py there); REPORT is
what `ftk-scrub --report --field text` wrote for it.  A found span counts as a
true positive only when its type and byte offsets equal a label's exactly;
anything else found is a false positive (attributed to the type it was
reported as), and a label not found exactly is a false negative.  Prints
precision, recall and F1 per type and overall (micro-averaged), how many of
the hard negatives were flagged and which look-alikes they were, and exits 1
when overall recall < 0.98 or precision < 0.95 (the issue's targets).
"""
import json
import sys
from collections import Counter, defaultdict


def main():
    lab_path, rep_path = sys.argv[1], sys.argv[2]
    records = {}
    with open(lab_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            records[lineno] = json.loads(line)
    gold = set()
    for ln, r in records.items():
        for s in r["labels"]:
            gold.add((ln, s["start"], s["end"], s["type"]))
    found = set()
    with open(rep_path, encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            if s["field"] != "text":
                continue
            found.add((s["line"], s["start"], s["end"], s["type"]))
    tp, fp, fn = Counter(), Counter(), Counter()
    for g in gold:
        (tp if g in found else fn)[g[3]] += 1
    neg_hits = Counter()
    n_neg = 0
    fp_examples = defaultdict(list)
    for ln, r in records.items():
        n_neg += len(r["negatives"])
    for x in found:
        if x in gold:
            continue
        fp[x[3]] += 1
        ln, st, en, typ = x
        r = records[ln]
        text = r["text"].encode()
        for ng in r["negatives"]:
            if st < ng["end"] and ng["start"] < en:
                neg_hits[text[ng["start"]:ng["end"]].decode()[:40]] += 1
                break
        if len(fp_examples[typ]) < 3:
            fp_examples[typ].append(text[st:en].decode()[:60])
    fn_examples = defaultdict(list)
    for g in sorted(gold - found):
        if len(fn_examples[g[3]]) < 3:
            fn_examples[g[3]].append(records[g[0]]["text"].encode()[g[1]:g[2]].decode()[:60])

    types = sorted(set(t for *_, t in gold) | set(fp))
    print(f"{'type':<16} {'labels':>6} {'found':>6} {'tp':>6} {'fp':>5} {'fn':>5} {'precision':>9} {'recall':>7} {'f1':>6}")

    def row(name, t, p, n):
        prec = t / (t + p) if t + p else 1.0
        rec = t / (t + n) if t + n else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        print(f"{name:<16} {t + n:>6} {t + p:>6} {t:>6} {p:>5} {n:>5} {prec:>9.4f} {rec:>7.4f} {f1:>6.4f}")
        return prec, rec

    for ty in types:
        row(ty, tp[ty], fp[ty], fn[ty])
    prec, rec = row("overall", sum(tp.values()), sum(fp.values()), sum(fn.values()))
    flagged = sum(neg_hits.values())
    print(f"hard negatives: {n_neg}, flagged: {flagged}")
    for k, v in neg_hits.most_common(10):
        print(f"  flagged negative x{v}: {k!r}")
    for ty, ex in sorted(fp_examples.items()):
        print(f"  false positive {ty}: {ex}")
    for ty, ex in sorted(fn_examples.items()):
        print(f"  missed {ty}: {ex}")
    ok = rec >= 0.98 and prec >= 0.95
    print("targets (recall >= 0.98, precision >= 0.95 overall):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
