#!/usr/bin/python3
"""A PEFT-layout LoRA adapter for stories260K and the logits it gives, from
PyTorch, for tests/unit/test_adapter.c.

The adapter is written here, independently of ftk: random lora_A / lora_B
(torch.manual_seed(7)) for q_proj, v_proj, o_proj, gate_proj and down_proj,
rank 4, lora_alpha 8, rsLoRA off, in the safetensors layout (u64 header
length, JSON header, raw little-endian float32 data) under PEFT's names, and
an adapter_config.json with the keys PEFT's LoraConfig.save_pretrained
writes.  The logits come from a hand-written float64 PyTorch forward pass of
the Hugging Face Llama architecture (RMSNorm, rotate_half RoPE, GQA causal
attention, SwiGLU, tied head) with every adapted projection computing
x W^T + (alpha / r) * (x A^T) B^T.  ftk must load the adapter and give the
same logits.  Regenerate with

    /usr/bin/python3 tools/ref/adapter_torch.py

which rewrites tests/fixtures/trainer/peft-stories260K/ and
tests/fixtures/trainer/adapter_logits.json.

The other direction: an adapter that ftk-train wrote
(tests/fixtures/trainer/ftk-adapter-stories260K, made by the command in
that directory's MADE_WITH) is read here with this file's own safetensors
reader, its names and config keys are checked against PEFT's, and its
logits are written for test_adapter.c to compare with ftk's:

    /usr/bin/python3 tools/ref/adapter_torch.py --check-ftk
"""
import json
import math
import os
import struct
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MODEL = os.path.join(ROOT, "datasets", "models", "stories260K")
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "trainer", "peft-stories260K")
OUT_LOGITS = os.path.join(ROOT, "tests", "fixtures", "trainer", "adapter_logits.json")
R, ALPHA = 4, 8.0
TARGETS = ["q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out, spans = {}, []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32"
        b, e = t["data_offsets"]
        assert e - b == 4 * math.prod(t["shape"]), name
        spans.append((b, e))
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(t["shape"])
    # the data section is exactly the tensors, back to back, no gaps or overlaps
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data), path
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1)), path
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        b = tensors[name].contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def block(mod):
    return "self_attn" if mod in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


PEFT_KEYS = sorted([
    "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out",
    "inference_mode", "init_lora_weights", "layer_replication", "layers_pattern",
    "layers_to_transform", "loftq_config", "lora_alpha", "lora_dropout", "megatron_config",
    "megatron_core", "modules_to_save", "peft_type", "r", "rank_pattern", "revision",
    "target_modules", "task_type", "use_dora", "use_rslora"])


def main():
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    W = {k: v.double() for k, v in read_safetensors(os.path.join(MODEL, "model.safetensors")).items()}
    L = cfg["num_hidden_layers"]

    check_ftk = "--check-ftk" in sys.argv
    if check_ftk:
        d = os.path.join(ROOT, "tests", "fixtures", "trainer", "ftk-adapter-stories260K")
        config = json.load(open(os.path.join(d, "adapter_config.json")))
        assert sorted(config) == PEFT_KEYS, sorted(set(config) ^ set(PEFT_KEYS))
        assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
        assert config["bias"] == "none" and not config["use_dora"]
        lora = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
        r = config["r"]
        mods = set()
        for name, t in lora.items():
            parts = name.split(".")
            # base_model.model.model.layers.N.<block>.<module>.lora_X.weight
            assert parts[:4] == ["base_model", "model", "model", "layers"], name
            assert parts[5] == block(parts[6]) and parts[8] == "weight", name
            assert parts[7] in ("lora_A", "lora_B"), name
            out_f, in_f = W[f"model.layers.{parts[4]}.{parts[5]}.{parts[6]}.weight"].shape
            assert list(t.shape) == ([r, in_f] if parts[7] == "lora_A" else [out_f, r]), name
            mods.add(parts[6])
        assert sorted(mods) == sorted(config["target_modules"]), (mods, config["target_modules"])
        TARGETS[:] = sorted(mods)
        scale = config["lora_alpha"] / (math.sqrt(r) if config["use_rslora"] else r)
        out_logits = os.path.join(ROOT, "tests", "fixtures", "trainer", "ftk_adapter_logits.json")
    torch.manual_seed(7)
    lora = lora if check_ftk else {}
    for l in range(L if not check_ftk else 0):
        for mod in TARGETS:
            w = W[f"model.layers.{l}.{block(mod)}.{mod}.weight"]
            out_f, in_f = w.shape
            pre = f"base_model.model.model.layers.{l}.{block(mod)}.{mod}"
            lora[pre + ".lora_A.weight"] = (torch.rand(R, in_f) * 2 - 1) / math.sqrt(in_f)
            lora[pre + ".lora_B.weight"] = torch.randn(out_f, R) * 0.05
    if not check_ftk:
        write_adapter(lora)
    scaling = scale if check_ftk else ALPHA / R

    def proj(x, l, mod):
        w = W[f"model.layers.{l}.{block(mod)}.{mod}.weight"]
        y = x @ w.T
        if mod in TARGETS:
            pre = f"base_model.model.model.layers.{l}.{block(mod)}.{mod}"
            A, B = lora[pre + ".lora_A.weight"].double(), lora[pre + ".lora_B.weight"].double()
            y = y + scaling * (x @ A.T) @ B.T
        return y

    logits = forward(W, cfg, proj)
    with open(out_logits if check_ftk else OUT_LOGITS, "w") as f:
        json.dump({"torch": torch.__version__, "ids": IDS, "scaling": scaling,
                   "logits": [[round(float(v), 7) for v in row] for row in logits]}, f)
        f.write("\n")


IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426]


def write_adapter(lora):
    os.makedirs(OUT_DIR, exist_ok=True)
    write_safetensors(os.path.join(OUT_DIR, "adapter_model.safetensors"), lora)
    config = {
        "alpha_pattern": {}, "auto_mapping": None,
        "base_model_name_or_path": "stories260K", "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": ALPHA, "lora_dropout": 0.0,
        "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": R, "rank_pattern": {}, "revision": None,
        "target_modules": TARGETS, "task_type": "CAUSAL_LM", "use_dora": False,
        "use_rslora": False,
    }
    with open(os.path.join(OUT_DIR, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def forward(W, cfg, proj):
    """Hugging Face Llama forward in float64 on IDS; proj(x, layer, module) applies a projection."""
    L = cfg["num_hidden_layers"]
    NH, NKV, HD = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rope(x, pos):  # x (T, H, HD), HF rotate_half layout
        inv = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))
        ang = pos[:, None].double() * inv[None, :]
        cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
        x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    T = len(IDS)
    pos = torch.arange(T)
    x = W["model.embed_tokens.weight"][IDS]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        h = rms(x, W[f"model.layers.{l}.input_layernorm.weight"])
        q = rope(proj(h, l, "q_proj").view(T, NH, HD), pos)
        k = rope(proj(h, l, "k_proj").view(T, NKV, HD), pos)
        v = proj(h, l, "v_proj").view(T, NKV, HD)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(HD) + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, NH * HD)
        x = x + proj(o, l, "o_proj")
        h = rms(x, W[f"model.layers.{l}.post_attention_layernorm.weight"])
        g = proj(h, l, "gate_proj")
        u = proj(h, l, "up_proj")
        x = x + proj(torch.nn.functional.silu(g) * u, l, "down_proj")
    return rms(x, W["model.norm.weight"]) @ W["model.embed_tokens.weight"].T


if __name__ == "__main__":
    main()
