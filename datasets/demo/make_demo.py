#!/usr/bin/python3
"""Make the demo's function-calling task: training data and a held-out eval suite.

The task is one stories260K cannot do before training: read a short request
("Give the ball to Lily.") and answer with the right function call and the
right arguments copied from the request (give(item="ball", to="Lily")).
Names and objects are ones TinyStories uses, so the tokenizer knows them.

Held out: 60 of the 400 (name, object) pairs never appear in training, in any
phrasing; the eval suite asks about those (give and find requests), so a model
that passes has learned to copy arguments, not memorised answers.  Requests to
call someone name no object, so each is in training once per phrasing.  The
real LLaMA-Factory identity samples (templated answers: near-duplicates) go
through the same pipeline beside this file.

The training file is an Alpaca JSON array, the form many datasets ship in, with
planted faults for the prep pipeline to find, each counted here so the demo's
numbers can be checked:
  - exact duplicates (a record repeated verbatim),
  - duplicates up to normalization (the request in capitals with doubled spaces),
  - personal data (an e-mail address or phone number in the request) for ftk-scrub,
  - eval cases copied into training (contamination) for ftk-decontam: only
    requests of seven words or more, which is what a 7-gram check can catch,
  - broken records (an empty answer) for ftk-validate.

Run: /usr/bin/python3 datasets/demo/make_demo.py  (deterministic: seed 20261123)
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261123)

NAMES = ["Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Sam", "Anna", "Tim", "Lucy",
         "Jack", "Amy", "Bob", "Kate", "Zoe", "Leo", "Mom", "Dad", "Spot", "Sara"]
ITEMS = ["ball", "cake", "book", "hat", "toy", "car", "doll", "kite", "box", "cup",
         "bird", "tree", "apple", "boat", "dog", "cat", "flower", "shoe", "bike", "bear"]
TEMPLATES = [
    ("give", "Give the {item} to {name}.", [("item", "{item}"), ("to", "{name}")]),
    ("give", "{name} wants the {item}. Please give it.", [("item", "{item}"), ("to", "{name}")]),
    ("find", "Where is the {item} of {name}?", [("item", "{item}"), ("owner", "{name}")]),
    ("find", "Help {name} find the {item}.", [("item", "{item}"), ("owner", "{name}")]),
    ("call", "Call {name} on the phone.", [("name", "{name}")]),
    ("call", "Please call {name}.", [("name", "{name}")]),
]
TOOLS = [
    {"type": "function", "function": {"name": "give", "description": "Give an object to someone.",
     "parameters": {"type": "object", "properties": {"item": {"type": "string"}, "to": {"type": "string"}},
                    "required": ["item", "to"]}}},
    {"type": "function", "function": {"name": "find", "description": "Find someone's object.",
     "parameters": {"type": "object", "properties": {"item": {"type": "string"}, "owner": {"type": "string"}},
                    "required": ["item", "owner"]}}},
    {"type": "function", "function": {"name": "call", "description": "Phone someone.",
     "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
]


def render(t, name, item):
    fn, text, args = t
    a = [(k, v.format(name=name, item=item)) for k, v in args]
    call = fn + "(" + ", ".join('%s="%s"' % (k, v) for k, v in a) + ")"
    return text.format(name=name, item=item), fn, dict(a), call


pairs = [(n, i) for n in NAMES for i in ITEMS]
rng.shuffle(pairs)
held = pairs[:60]
seen = pairs[60:]

ARG_TEMPLATES = [t for t in TEMPLATES if t[0] != "call"]
CALL_TEMPLATES = [t for t in TEMPLATES if t[0] == "call"]

train = []
for n, i in seen:
    for t in ARG_TEMPLATES:
        q, fn, args, call = render(t, n, i)
        train.append({"instruction": q, "input": "", "output": call + "\n"})
for n in NAMES:
    for t in CALL_TEMPLATES:
        q, fn, args, call = render(t, n, "")
        train.append({"instruction": q, "input": "", "output": call + "\n"})
rng.shuffle(train)

cases = []
for k, (n, i) in enumerate(held):
    t = ARG_TEMPLATES[k % len(ARG_TEMPLATES)]
    q, fn, args, call = render(t, n, i)
    cases.append({"id": "call-%03d" % k, "messages": [{"role": "user", "content": q}],
                  "tools": TOOLS, "expected": {"tool_calls": [{fn: {k2: [v] for k2, v in args.items()}}]},
                  "answer": call})

planted = {"exact_duplicates": 0, "normalization_duplicates": 0, "pii": 0, "contaminated": 0,
           "broken": 0}
extra = []
for r in rng.sample(train, 40):
    extra.append(dict(r))
    planted["exact_duplicates"] += 1
for r in rng.sample(train, 30):
    # the same request in other case and spacing: equal once normalized
    q = r["instruction"].upper().replace(" ", "  ")
    extra.append({"instruction": q, "input": "", "output": r["output"]})
    planted["normalization_duplicates"] += 1
for k, r in enumerate(rng.sample(train, 20)):
    contact = "lily.%d@example.com" % k if k % 2 == 0 else "+44 20 7946 %04d" % (100 + k)
    r["input"] = "Reach me at %s if it is lost." % contact
    planted["pii"] += 1
# contamination: eval requests copied into training.  Only requests of seven
# words or more can be caught by ftk-decontam --ngram 7, so that is what is planted
for c in [c for c in cases if len(c["messages"][0]["content"].split()) >= 7][:10]:
    extra.append({"instruction": c["messages"][0]["content"], "input": "", "output": c["answer"] + "\n"})
    planted["contaminated"] += 1
for r in rng.sample(train, 8):
    extra.append({"instruction": r["instruction"], "input": "", "output": "  "})
    planted["broken"] += 1
train += extra
rng.shuffle(train)

with open(os.path.join(HERE, "calls_train.json"), "w") as f:
    json.dump(train, f, indent=1, ensure_ascii=False)
    f.write("\n")
with open(os.path.join(HERE, "calls_eval.jsonl"), "w") as f:
    for c in cases:
        c = dict(c)
        del c["answer"]
        f.write(json.dumps(c) + "\n")
suite = {
    "name": "calls",
    "description": "Held-out function calls: the right function with arguments copied from the request "
                   "(names and objects never seen together in training). Made by make_demo.py.",
    "cases": "calls_eval.jsonl",
    "judges": [
        {"judge": "toolcall"},
        {"judge": "regex", "settings": {"pattern": "^\\s*(give|find|call)\\(", "label": "looks_like_call", "twin": "toolcall.correct"}},
    ],
    "generation": {"max_tokens": 40, "temperature": 0, "stop": ["\n"]},
}
with open(os.path.join(HERE, "calls_suite.json"), "w") as f:
    json.dump(suite, f, indent=2)
    f.write("\n")
with open(os.path.join(HERE, "planted.json"), "w") as f:
    json.dump(dict(planted, records=len(train), eval_cases=len(cases)), f, indent=2)
    f.write("\n")
print(json.dumps(dict(planted, records=len(train), eval_cases=len(cases))))
