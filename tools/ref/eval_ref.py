#!/usr/bin/python3
"""References for ftk's standard-task evals (tests/unit/test_loglik.c), computed
without ftk: the prompts lm-evaluation-harness builds from the bundled benchmark
samples, and the log-likelihoods stories260K gives to (context, continuation)
pairs, from a float64 PyTorch forward pass.

Three steps, run from the repository root:

    /usr/bin/python3 tools/ref/eval_ref.py docs
        renders every document of datasets/evals/*.jsonl the way the harness's
        default task configs do (Python's own str.strip, str.capitalize and re,
        which ftk re-implements in C) into tests/fixtures/eval/harness_docs.json,
        and writes the scoring requests to /tmp/ftk-loglik-requests.json;
    (cd tools/ref && npm install --ignore-scripts && node loglik_tok.mjs)
        tokenizes them with transformers.js (the harness's _encode_pair:
        trailing context whitespace moved to the continuation, context and
        context+continuation encoded, continuation = the tail);
    /usr/bin/python3 tools/ref/eval_ref.py score
        reads the tokens, prepends BOS, truncates from the left to the model's
        context, and sums log_softmax over the continuation in float64 into
        tests/fixtures/eval/loglik_ref.json (with each request's acc/acc_norm
        inputs: the log-likelihoods and the choices' lengths).
"""
import json
import math
import os
import re
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DATA = os.path.join(ROOT, "datasets", "evals")
FIX = os.path.join(ROOT, "tests", "fixtures", "eval")
MODEL = os.path.join(ROOT, "datasets", "models", "stories260K")
REQ = "/tmp/ftk-loglik-requests.json"
TOK = "/tmp/ftk-loglik-tokens.json"

PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def hs_pre(text):  # lm-eval tasks/hellaswag/utils.py preprocess
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def lines(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def docs():
    out = {}
    out["gsm8k"] = [{"query": "Question: " + d["question"] + "\nAnswer:",
                     "target": d["answer"],
                     "gold": d["answer"].split("####")[-1].strip().replace(",", "")}
                    for d in lines("gsm8k.jsonl")]
    out["arc"] = [{"id": d["id"], "query": "Question: " + d["question"]["stem"] + "\nAnswer:",
                   "choices": [c["text"] for c in d["question"]["choices"]],
                   "answer": [c["label"] for c in d["question"]["choices"]].index(d["answerKey"])}
                  for d in lines("arc_challenge.jsonl")]
    out["hellaswag"] = [{"query": hs_pre(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize()),
                         "choices": [hs_pre(e) for e in d["endings"]], "answer": int(d["label"])}
                        for d in lines("hellaswag.jsonl")]
    out["mmlu"] = [{"query": d["question"].strip() + "".join("\n%s. %s" % (k, d[k]) for k in "ABCD") + "\nAnswer:",
                    "description": "The following are multiple choice questions (with answers) about "
                                   + d["subject"].replace("_", " ") + ".\n\n",
                    "choices": ["A", "B", "C", "D"], "answer": "ABCD".index(d["answer"])}
                   for d in lines("mmlu.jsonl")]
    for mc in ("mc1", "mc2"):
        out["truthfulqa_" + mc] = [{"query": PRIMER + "\n\nQ: " + d["question"] + "\nA:",
                                    "choices": list(d[mc + "_targets"].keys()),
                                    "labels": list(d[mc + "_targets"].values()), "answer": 0}
                                   for d in lines("truthfulqa_mc.jsonl")]
    tricky = ["  a   b  ", "How to x [title] Do y [step] z", "[header] a [unclosed b",
              "x [a\nb] y", "[a][b]c", "\u00a0caf\u00e9 [x]  .", "\u00e9cole ELSE"]
    out["preprocess"] = [[t, hs_pre(t)] for t in tricky]
    out["extract"] = extract_cases()
    out["capitalize"] = [[t, t.capitalize()] for t in tricky]
    return out


def regex_filter(pattern, group_select, text):  # lm-eval filters/extraction.py RegexFilter
    m = re.compile(pattern).findall(text)
    if not m:
        return "[invalid]"
    m = m[group_select]
    if isinstance(m, tuple):
        m = [x for x in m if x]
        m = m[0] if m else "[invalid]"
    return m.strip()


def exact_match(pred, gold):  # HF evaluate exact_match as gsm8k.yaml configures it
    for r in [",", "\\$", "(?s).*#### ", "\\.$"]:
        pred, gold = re.sub(r, "", pred), re.sub(r, "", gold)
    return int(pred.lower() == gold.lower())


def extract_cases():
    texts = [("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
             ("She makes 9 * 2 = $18 every day.", "18"),
             ("#### 1,000 and then 7", "1000"),
             ("The answer is 3.5.", "3.5"),
             ("#### -4\n#### 5", "-4"),
             ("no numbers here", "5"),
             ("I think 12 or maybe 13.", "12"),
             ("It costs $1,250.", "1250")]
    out = []
    for t, gold in texts:
        s = regex_filter("#### (\\-?[0-9\\.\\,]+)", 0, t)
        f = regex_filter("(-?[$0-9.,]{2,})|(-?[0-9]+)", -1, t)
        out.append({"text": t, "gold": gold, "strict": s, "flexible": f,
                    "strict_pass": exact_match(s, gold), "flexible_pass": exact_match(f, gold)})
    return out


def requests(ds):
    """(context, continuation) pairs: the first docs of each multiple-choice task, and edge cases."""
    req = []
    for task, n in (("arc", 6), ("hellaswag", 4), ("mmlu", 2), ("truthfulqa_mc2", 2)):
        for i, d in enumerate(ds[task][:n]):
            ctx = d.get("description", "") + d["query"]
            for c in d["choices"]:
                req.append({"task": task, "doc": i, "context": ctx, "continuation": " " + c})
    story = lines("hellaswag.jsonl")[0]["ctx"]
    edge = [
        ("", "Once upon a time"),                      # empty context: BOS alone
        ("Answer: ", "B"),                             # trailing space moves to the continuation
        ("The end.\n\n", "Once"),                      # trailing newlines too
        ("Lily and Ben", "jamin went home"),          # a word split across the boundary
        (" ".join([story] * 12), " The end."),         # longer than the context: left truncation
    ]
    for c, x in edge:
        req.append({"task": "edge", "doc": -1, "context": c, "continuation": x})
    rolling = ["Once upon a time, there was a little girl named Lily. She loved to play outside.",
               " ".join([story] * 10)]
    return req, rolling


def read_safetensors(path):
    import torch
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(t["shape"]).double()
    return out


def make_forward():
    import torch
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    W = read_safetensors(os.path.join(MODEL, "model.safetensors"))
    L, NH, NKV, HD = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rope(x, T):
        inv = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
        return x * cos + torch.cat([-x[..., HD // 2:], x[..., :HD // 2]], -1) * sin

    def forward(ids):  # log-probabilities (T, V) in float64
        T = len(ids)
        x = W["model.embed_tokens.weight"][ids]
        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        for l in range(L):
            p = "model.layers.%d." % l
            h = rms(x, W[p + "input_layernorm.weight"])
            q = rope((h @ W[p + "self_attn.q_proj.weight"].T).view(T, NH, HD), T)
            k = rope((h @ W[p + "self_attn.k_proj.weight"].T).view(T, NKV, HD), T)
            v = (h @ W[p + "self_attn.v_proj.weight"].T).view(T, NKV, HD)
            k, v = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)
            a = (torch.einsum("thd,shd->hts", q, k) / math.sqrt(HD) + mask).softmax(-1)
            x = x + torch.einsum("hts,shd->thd", a, v).reshape(T, NH * HD) @ W[p + "self_attn.o_proj.weight"].T
            h = rms(x, W[p + "post_attention_layernorm.weight"])
            g = h @ W[p + "mlp.gate_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        return (rms(x, W["model.norm.weight"]) @ head.T).log_softmax(-1)

    return forward, cfg["max_position_embeddings"]


def score():
    import torch
    forward, max_len = make_forward()
    tok = json.load(open(TOK))
    bos = 1
    out = {"torch": torch.__version__, "max_len": max_len, "requests": [], "rolling": []}
    for r in tok["requests"]:
        ids = [bos] + r["ctx_ids"] + r["cont_ids"]
        ids = ids[-(max_len + 1):]
        n_ctx = len(ids) - len(r["cont_ids"])
        lp = forward(ids[:-1])
        ll, greedy = 0.0, True
        for j in range(n_ctx, len(ids)):
            ll += float(lp[j - 1, ids[j]])
            greedy &= int(lp[j - 1].argmax()) == ids[j]
        out["requests"].append({"task": r["task"], "doc": r["doc"], "context": r["context"],
                                "continuation": r["continuation"], "ids": ids, "n_ctx": n_ctx,
                                "ll": round(ll, 9), "greedy": greedy})
    for r in tok["rolling"]:
        full = [bos] + r["ids"]
        n, ll = len(r["ids"]), 0.0
        s = 1
        while s <= n:  # windows of max_len targets, each reading the max_len ids before its last
            e = min(s + max_len, n + 1)
            a = max(0, e - 1 - max_len)
            lp = forward(full[a:e - 1])
            for j in range(s, e):
                ll += float(lp[j - 1 - a, full[j]])
            s = e
        out["rolling"].append({"text": r["text"], "tokens": n, "ll": round(ll, 9)})
    # per document: acc, acc_norm (by len(choice) in characters, as the harness),
    # mc2 (split at the first label 0, p = exp(ll)); numpy's argmax takes the first maximum
    ds = docs()
    out["docs"] = []
    for task, n in (("arc", 6), ("hellaswag", 4), ("mmlu", 2), ("truthfulqa_mc2", 2)):
        for i in range(n):
            d = ds[task][i]
            lls = [r["ll"] for r in out["requests"] if r["task"] == task and r["doc"] == i]
            norm = [ll / len(c) for ll, c in zip(lls, d["choices"])]
            m = {"task": task, "doc": i, "acc": int(lls.index(max(lls)) == d["answer"]),
                 "acc_norm": int(norm.index(max(norm)) == d["answer"])}
            if "labels" in d:
                split = d["labels"].index(0)
                p = [math.exp(x) for x in lls]
                m["mc2"] = sum(p[:split]) / sum(p)
            out["docs"].append(m)
    os.makedirs(FIX, exist_ok=True)
    with open(os.path.join(FIX, "loglik_ref.json"), "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")
    print("wrote %d requests, %d rolling texts" % (len(out["requests"]), len(out["rolling"])))


def main():
    if sys.argv[1:] == ["docs"]:
        ds = docs()
        os.makedirs(FIX, exist_ok=True)
        with open(os.path.join(FIX, "harness_docs.json"), "w") as f:
            json.dump(ds, f, indent=0, ensure_ascii=False)
            f.write("\n")
        req, rolling = requests(ds)
        with open(REQ, "w") as f:
            json.dump({"requests": req, "rolling": rolling}, f)
        print("wrote harness_docs.json and %d requests to %s" % (len(req), REQ))
    elif sys.argv[1:] == ["score"]:
        score()
    else:
        sys.exit("usage: eval_ref.py docs|score")


if __name__ == "__main__":
    main()
