#!/usr/bin/python3
# Write a Llama-shaped model with random weights for bench/train.sh:
#   train_model.py OUT_DIR [hidden layers heads kv_heads intermediate vocab]
# Default shape: hidden 512, 5 layers, 8 heads, 4 KV heads, intermediate 1536,
# vocab 8192, tied head: 20.0M parameters.  numpy only; safetensors layout
# written by hand (u64 LE header length, JSON header, raw float32 data).
import json, os, struct, sys
import numpy as np

out = sys.argv[1]
C, L, NH, NKV, H, V = (int(x) for x in (sys.argv[2:8] or [512, 5, 8, 4, 1536, 8192]))
hd = C // NH
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
t = {"model.embed_tokens.weight": rng.standard_normal((V, C)) * 0.02,
     "model.norm.weight": np.ones(C)}
for l in range(L):
    p = f"model.layers.{l}."
    for name, shape in (("self_attn.q_proj", (NH * hd, C)), ("self_attn.k_proj", (NKV * hd, C)),
                        ("self_attn.v_proj", (NKV * hd, C)), ("self_attn.o_proj", (C, NH * hd)),
                        ("mlp.gate_proj", (H, C)), ("mlp.up_proj", (H, C)), ("mlp.down_proj", (C, H))):
        t[p + name + ".weight"] = rng.standard_normal(shape) * (1.0 / np.sqrt(shape[1]))
    t[p + "input_layernorm.weight"] = np.ones(C)
    t[p + "post_attention_layernorm.weight"] = np.ones(C)
header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
for name in sorted(t):
    a = np.ascontiguousarray(t[name], dtype="<f4")
    header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes
    blobs.append(a.tobytes())
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
       "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH,
       "num_key_value_heads": NKV, "head_dim": hd, "vocab_size": V, "max_position_embeddings": 1024,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
       "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
print(sum(a.size for a in t.values()))
