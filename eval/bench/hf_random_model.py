"""Write a randomly initialised Hugging Face model directory with transformers,
for measuring opd's loader (README, "Using a real model"). The default shape
is Qwen2.5-0.5B's (hidden 896, 24 layers, 14/2 heads, intermediate 4864,
vocab 151936, tied), written in bf16 (~1 GB).

usage: python hf_random_model.py OUT_DIR [--llama] [--dtype bf16|f32]
"""
import argparse

import torch
import transformers

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--llama", action="store_true")
ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
a = ap.parse_args()
shape = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
             num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
             rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)
cls = transformers.LlamaForCausalLM if a.llama else transformers.Qwen2ForCausalLM
cfg = (transformers.LlamaConfig if a.llama else transformers.Qwen2Config)(**shape)
dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
torch.manual_seed(0)
model = cls._from_config(cfg, torch_dtype=dtype)
model.save_pretrained(a.out, safe_serialization=True)
print(f"wrote {a.out}: {sum(p.numel() for p in model.parameters())} parameters, {a.dtype}")
