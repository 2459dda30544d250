#!/usr/bin/python3
"""Build the example eval suite bfcl-mini from the bundled BFCL v4 data.

    /usr/bin/python3 datasets/suites/make_bfcl_suite.py

Reads datasets/bfcl/BFCL_v4_{simple_python,multiple}.json and their
possible_answer files (Apache-2.0, ShishirPatil/gorilla) and writes
datasets/suites/bfcl-mini.jsonl: the first 24 simple_python and the first 16
multiple questions as ftk eval cases.  Each case keeps BFCL's id, its user
message, its functions as OpenAI-style tools (the parameter schemas exactly as
BFCL gives them, BFCL's type names included, which the toolcall judge
understands), and BFCL's ground truth as "expected.tool_calls".  The suite
file itself, bfcl-mini.json, is written by hand.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
BFCL = os.path.join(HERE, "..", "bfcl")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cases(category, n):
    qs = read_jsonl(os.path.join(BFCL, "BFCL_v4_%s.json" % category))
    answers = {a["id"]: a for a in read_jsonl(os.path.join(BFCL, "possible_answer",
                                                            "BFCL_v4_%s.json" % category))}
    for q in qs[:n]:
        yield {
            "id": q["id"],
            "messages": q["question"][0],
            "tools": [{"type": "function", "function": f} for f in q["function"]],
            "expected": {"tool_calls": answers[q["id"]]["ground_truth"]},
        }


def main():
    out = os.path.join(HERE, "bfcl-mini.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for c in list(cases("simple_python", 24)) + list(cases("multiple", 16)):
            f.write(json.dumps(c, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
