#!/usr/bin/python3
# PyTorch references for tests/unit/test_ops_shared.c: the per-row arithmetic
# of model/ops.h (RMSNorm, softmax and its backward, SiLU/SwiGLU and their
# gradients, cross-entropy with its gradient, HF rotate_half RoPE, one
# AdamW step) on fixed inputs, computed by torch (float32; autograd for the
# backward passes).  Regenerate with:
#   /usr/bin/python3 tools/ref/ops_shared_ref.py > tests/fixtures/trainer/ops_shared_ref.json
import json, math
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
def vec(n, a, b, s):  # the same inputs the C test builds: s * sin(a * i + b)
    return torch.tensor([s * math.sin(a * i + b) for i in range(n)], dtype=torch.float32)
out = {}

x = vec(16, 0.7, 0.3, 2.0); w = vec(16, 1.3, 0.1, 1.0); dy = vec(16, 0.9, 0.5, 1.0)
xr = x.clone().requires_grad_(True)
rms = torch.rsqrt(xr.pow(2).mean() + 1e-5)
y = xr * rms * w
y.backward(dy)
out["rmsnorm"] = {"y": y.tolist(), "rstd": float(rms), "dx": xr.grad.tolist()}

s = vec(10, 0.5, 0.2, 3.0); dp = vec(10, 1.1, 0.4, 1.0)
sr = s.clone().requires_grad_(True)
p = torch.softmax(sr, 0)
p.backward(dp)
out["softmax"] = {"p": p.tolist(), "dx": sr.grad.tolist()}

g = vec(12, 0.8, 0.1, 4.0); u = vec(12, 0.6, 0.7, 2.0); do = vec(12, 1.7, 0.2, 1.0)
gr = g.clone().requires_grad_(True); ur = u.clone().requires_grad_(True)
o = F.silu(gr) * ur
o.backward(do)
out["swiglu"] = {"out": o.tolist(), "dg": gr.grad.tolist(), "du": ur.grad.tolist()}

l = vec(12, 0.9, 0.3, 5.0)
lr_ = l.clone().requires_grad_(True)
loss = F.cross_entropy(lr_.unsqueeze(0), torch.tensor([5]))
loss.backward()
out["xent"] = {"loss": float(loss), "grad": lr_.grad.tolist()}

hd, pos, theta = 8, 5, 10000.0
q = vec(hd, 0.4, 0.9, 1.0)
inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
emb = torch.cat([pos * inv, pos * inv])
rot = torch.cat([-q[hd // 2:], q[:hd // 2]])
out["rope"] = {"inv_freq": inv.tolist(), "q": (q * emb.cos() + rot * emb.sin()).tolist()}

pw = vec(6, 0.3, 0.2, 1.0).requires_grad_(True)
opt = torch.optim.AdamW([pw], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)
pw.grad = vec(6, 1.9, 0.6, 0.5)
opt.step()
st = opt.state[pw]
out["adamw"] = {"p": pw.detach().tolist(), "m": st["exp_avg"].tolist(), "v": st["exp_avg_sq"].tolist()}
print(json.dumps(out, indent=1))
