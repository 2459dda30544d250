#!/usr/bin/python3
"""Build the example eval suite alce-demos from the bundled ALCE prompt files.

    /usr/bin/python3 datasets/suites/make_alce_suite.py

Reads datasets/alce/prompts/{asqa,eli5}_default.json (MIT, princeton-nlp/ALCE)
and writes, beside this script:

  alce-demos.jsonl          8 cases: each demonstration's question with its five
                            retrieved documents as numbered "sources", the prompt
                            rendered as ALCE renders it (instruction, question,
                            "Document [n](Title: ...): ..." lines), cluster = the
                            dataset (asqa or eli5)
  alce-demos.answers.jsonl  the demonstrations' hand-written answers, whose [n]
                            markers cite those documents: outputs to score with
                            ftk-eval run --outputs

QAMPARI is left out: its list answers need the citation judge's "split": "list"
setting, which is per suite, not per case.  The suite file, alce-demos.json, is
written by hand.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ALCE = os.path.join(HERE, "..", "alce", "prompts")


def main():
    cases, answers = [], []
    for name in ("asqa", "eli5"):
        with open(os.path.join(ALCE, "%s_default.json" % name), encoding="utf-8") as f:
            p = json.load(f)
        for i, d in enumerate(p["demos"]):
            docs = "".join(p["doc_prompt"].replace("{ID}", str(k + 1)).replace("{T}", doc["title"])
                           .replace("{P}", doc["text"]) for k, doc in enumerate(d["docs"]))
            prompt = (p["demo_prompt"].replace("{INST}", p["instruction"]).replace("{Q}", d["question"])
                      .replace("{D}", docs).replace("{A}", "").rstrip())
            cid = "%s_demo_%d" % (name, i)
            cases.append({"id": cid, "cluster": name, "question": d["question"],
                          "messages": [{"role": "user", "content": prompt}],
                          "sources": [{"title": doc["title"], "text": doc["text"]} for doc in d["docs"]]})
            answers.append({"id": cid, "output": d["answer"]})
    for fname, rows in (("alce-demos.jsonl", cases), ("alce-demos.answers.jsonl", answers)):
        with open(os.path.join(HERE, fname), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
