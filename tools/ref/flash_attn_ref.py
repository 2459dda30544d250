#!/usr/bin/python3
# PyTorch reference for tests/unit/test_flash.c: causal attention with
# packed-document masks and grouped-query heads (NKV < NH), the masked
# softmax written out (torch 1.13 has no scaled_dot_product_attention),
# autograd for dq, dk, dv of sum(out * dout), and each query row's
# log-sum-exp.  Shapes as model/backend.h: q (B, T, NH, hd), k, v
# (B, T, NKV, hd).  A query attends to the earlier-or-equal positions of the
# run of equal document ids it is in; row 1 reuses id 0 after id 1, which
# starts a new document.  Inputs are s * sin(a * i + b) over the flat
# arrays, as the C test builds them.  Regenerate with:
#   /usr/bin/python3 tools/ref/flash_attn_ref.py > tests/fixtures/trainer/flash_attn_ref.json
import json, math
import torch

torch.set_default_dtype(torch.float32)
B, T, NH, NKV, hd = 2, 37, 4, 2, 16

def vec(shape, a, b, s):
    n = math.prod(shape)
    return torch.tensor([s * math.sin(a * i + b) for i in range(n)], dtype=torch.float32).reshape(shape)

q = vec((B, T, NH, hd), 0.37, 0.1, 1.5).requires_grad_(True)
k = vec((B, T, NKV, hd), 0.53, 0.7, 1.5).requires_grad_(True)
v = vec((B, T, NKV, hd), 0.29, 0.3, 1.0).requires_grad_(True)
dout = vec((B, T, NH, hd), 0.71, 0.2, 1.0)
doc = [[0] * 9 + [1] * 20 + [2] * 8,
       [0] * 12 + [1] * 5 + [0] * 20]

# allowed[b, t, s]: s <= t and every position in [s, t] has t's document id
allowed = torch.zeros(B, T, T, dtype=torch.bool)
for b in range(B):
    for t in range(T):
        s = t
        while s > 0 and doc[b][s - 1] == doc[b][t]:
            s -= 1
        allowed[b, t, s:t + 1] = True

g = NH // NKV
kx = k.repeat_interleave(g, dim=2)  # head h uses kv head h // g
vx = v.repeat_interleave(g, dim=2)
scores = torch.einsum("bthd,bshd->bhts", q, kx) / math.sqrt(hd)
scores = scores.masked_fill(~allowed[:, None], float("-inf"))
lse = torch.logsumexp(scores, dim=-1)  # (B, NH, T)
p = torch.softmax(scores, dim=-1)
out = torch.einsum("bhts,bshd->bthd", p, vx)
(out * dout).sum().backward()

res = {"B": B, "T": T, "NH": NH, "NKV": NKV, "hd": hd,
       "doc": [d for row in doc for d in row],
       "out": out.detach().flatten().tolist(), "lse": lse.detach().flatten().tolist(),
       "dq": q.grad.flatten().tolist(), "dk": k.grad.flatten().tolist(),
       "dv": v.grad.flatten().tolist()}
def short(x):  # 9 significant digits: float32 round-trips
    if isinstance(x, list):
        return [short(y) for y in x]
    return float("%.9g" % x) if isinstance(x, float) else x
print(json.dumps({key: short(val) for key, val in res.items()}))
