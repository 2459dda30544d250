#!/usr/bin/env python3
"""toolcall_ref.py: gen-toolcall.mjs's renders with Python's Jinja2, set up as
transformers' apply_chat_template sets it up (an ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loop controls; a tojson filter through
json.dumps; raise_exception), for tests/cli/tokenize-toolcall-null.

    python3 tools/ref/toolcall_ref.py     (a Python with Jinja2 3.x: python3-jinja2 or pip)

reads tests/fixtures/tokref/toolcall-in.jsonl and writes toolcall-py.jsonl:
per template and record, the render with content null as it is ("null":
Qwen3's template raises an error, Llama 3's prints the word None) and with
each null content given as "" ("empty": the text).  transformers is not
needed, only Jinja2 (made with 3.1.6), hence the set-up by hand.
"""
import json
import os

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokref")


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception

recs = [json.loads(l) for l in open(os.path.join(OUT, "toolcall-in.jsonl")) if l.strip()]
rows = []
for name in ("qwen3", "llama3"):
    cfg = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tokenizers", name, "tokenizer_config.json")))
    tpl = env.from_string(cfg["chat_template"])
    specials = {k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)}
    for i, r in enumerate(recs):
        def render(messages):
            return tpl.render(messages=messages, tools=r.get("tools"), documents=None,
                              add_generation_prompt=False, **specials)
        row = {"line": i + 1, "template": name}
        try:
            row["null"] = {"text": render(r["messages"])}
        except Exception as e:  # what the user of transformers sees
            row["null"] = {"error": "%s: %s" % (type(e).__name__, e)}
        empty = [dict(m, content="") if m.get("content", "") is None else m for m in r["messages"]]
        row["empty"] = {"text": render(empty)}
        rows.append(row)
with open(os.path.join(OUT, "toolcall-py.jsonl"), "w") as f:
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
print("%d renders" % len(rows))
