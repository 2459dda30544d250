#!/usr/bin/python3
# The PyTorch side of bench/train.sh: a hand-written Llama (RMSNorm, RoPE in
# HF's rotate_half layout, GQA causal attention, SwiGLU, tied head) with LoRA
# on all seven projections, frozen float32 base, AdamW on the LoRA weights,
# timed over whole steps (forward, backward, optimizer).
#   OPENBLAS_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE train_torch.py MODEL_DIR THREADS B T RANK STEPS
# Prints one line: "torch tokens_per_s=... step_s=... cpu_s=... tokens_per_cpu_s=... loss=... peak_rss_mb=...".
import json, math, os, resource, struct, sys, time
import numpy as np
import torch

mdir, threads, B, T, r, steps = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = json.load(open(os.path.join(mdir, "config.json")))
C, L, NH, NKV = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
H, V, hd, eps = cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"], cfg["rms_norm_eps"]
raw = open(os.path.join(mdir, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
W = {k: torch.from_numpy(np.frombuffer(raw, "<f4", int(np.prod(v["shape"])), 8 + n + v["data_offsets"][0]).reshape(v["shape"]).copy())
     for k, v in hdr.items() if k != "__metadata__"}

class Lora(torch.nn.Module):
    def __init__(self, w, r, alpha):
        super().__init__()
        self.w = w  # frozen (out, in)
        self.A = torch.nn.Parameter(torch.empty(r, w.shape[1]))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(w.shape[0], r))
        self.s = alpha / r
    def forward(self, x):
        return x @ self.w.t() + ((x @ self.A.t()) @ self.B.t()) * self.s

def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
ang = torch.outer(torch.arange(T).float(), inv)
cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
def rope(x):  # (B, nh, T, hd)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
layers = []
for l in range(L):
    p = f"model.layers.{l}."
    d = {nm: Lora(W[p + ("mlp." if nm in names[4:] else "self_attn.") + nm + ".weight"], r, 2 * r) for nm in names}
    layers.append((torch.nn.ModuleDict(d), W[p + "input_layernorm.weight"], W[p + "post_attention_layernorm.weight"]))
params = [q for m, _, _ in layers for q in m.parameters()]
opt = torch.optim.AdamW(params, lr=1e-4)
mask = torch.full((T, T), float("-inf")).triu(1)
emb, normf = W["model.embed_tokens.weight"], W["model.norm.weight"]

def step(ids):
    x = emb[ids]
    for m, ln1, ln2 in layers:
        h = rms(x, ln1)
        q = m["q_proj"](h).view(B, T, NH, hd).transpose(1, 2)
        k = m["k_proj"](h).view(B, T, NKV, hd).transpose(1, 2)
        v = m["v_proj"](h).view(B, T, NKV, hd).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(NH // NKV, 1)
        v = v.repeat_interleave(NH // NKV, 1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
        x = x + m["o_proj"](a.transpose(1, 2).reshape(B, T, NH * hd))
        h = rms(x, ln2)
        x = x + m["down_proj"](torch.nn.functional.silu(m["gate_proj"](h)) * m["up_proj"](h))
    logits = rms(x, normf) @ emb.t()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()

g = torch.Generator().manual_seed(1)
ids = torch.randint(0, V, (B, T), generator=g)
step(ids)  # warm-up
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps):
    loss = step(ids)
dt = (time.perf_counter() - t0) / steps
dc = (time.process_time() - c0) / steps
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch tokens_per_s={B * T / dt:.1f} step_s={dt:.4f} cpu_s={dc:.4f} tokens_per_cpu_s={B * T / dc:.1f} loss={loss:.4f} peak_rss_mb={rss:.0f}")
