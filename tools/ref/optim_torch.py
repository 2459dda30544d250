#!/usr/bin/python3
"""Reference numbers for tests/unit/test_optim.c from PyTorch itself.

Runs torch.optim.AdamW (foreach=False, the single-tensor loop) and
torch.nn.utils.clip_grad_norm_ on a fixed parameter vector and a fixed
sequence of gradients with a changing learning rate, and writes every
input and the state after each step as JSON.  Regenerate with

    /usr/bin/python3 tools/ref/optim_torch.py > tests/fixtures/trainer/optim_torch.json

(Debian's python3 with python3-torch; the numbers were made with torch 1.13.)
"""
import json
import numpy as np
import torch

rng = np.random.default_rng(1234)
n = 37
steps = 6
w0 = rng.standard_normal(n).astype(np.float32)
grads = [(rng.standard_normal(n) * (0.1 + 3 * k)).astype(np.float32) for k in range(steps)]
lrs = [1e-3 * (k + 1) for k in range(steps)]
betas, eps, wd, max_norm = (0.9, 0.95), 1e-8, 0.01, 2.5

p = torch.nn.Parameter(torch.tensor(w0))
opt = torch.optim.AdamW([p], lr=lrs[0], betas=betas, eps=eps, weight_decay=wd, foreach=False)
out = []
for k in range(steps):
    for group in opt.param_groups:
        group["lr"] = lrs[k]
    p.grad = torch.tensor(grads[k])
    norm = torch.nn.utils.clip_grad_norm_([p], max_norm)
    clipped = p.grad.detach().clone()
    opt.step()
    st = opt.state[p]
    out.append({
        "norm": float(norm),
        "clipped": clipped.tolist(),
        "w": p.detach().tolist(),
        "m": st["exp_avg"].tolist(),
        "v": st["exp_avg_sq"].tolist(),
    })

print(json.dumps({
    "torch": torch.__version__,
    "n": n, "betas": betas, "eps": eps, "weight_decay": wd, "max_norm": max_norm,
    "lrs": lrs, "w0": w0.tolist(), "grads": [g.tolist() for g in grads],
    "steps": out,
}))
