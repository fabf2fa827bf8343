"""Cross-check of opd's Hugging Face directory reader and writer against
transformers itself (run by tests/hf_crosscheck.sh in the venv of
tests/pyenv.sh: transformers 4.44.2 over Debian's torch).

1. transformers writes tiny random Qwen2 and Llama models (fp32, bf16, fp16;
   single file and sharded; tied and untied; rope_theta 1e4 and 1e6).
   tests/hf_dump loads each with opd and writes its logits, the next-token
   cross-entropy, every parameter's gradient and a greedy continuation; the
   same are computed by transformers in fp32 on the same weights (16-bit
   weights are upcast exactly, so opd and transformers see identical fp32
   weights and the tolerances are those of fp32 vs fp32):
     logits   max abs err / max |logits|         <= 1e-5
     loss     abs err / max(1, loss)             <= 1e-5
     grads    max abs err / max |grad|, each     <= 1e-4
     greedy   identical tokens
2. opd init + 3 opd sft steps + opd export (f32 and bf16) -> from_pretrained:
   logits as above;
   the bf16 weights equal torch's own fp32 -> bf16 rounding, bit for bit.
3. Bad directories: `opd info` exits non-zero with one line naming the file
   and the key or tensor.

usage: hf_crosscheck.py OPD HF_DUMP WORKDIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()
OPD, DUMP, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
TOL_LOGITS, TOL_LOSS, TOL_GRAD = 1e-5, 1e-5, 1e-4
B, T, NGEN = 2, 7, 6
failures = 0
worst = {"logits": 0.0, "loss": 0.0, "grad": 0.0}


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")


def make_model(kind, tied, theta, seed):
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_theta=theta, tie_word_embeddings=tied,
                  attn_implementation="eager")
    if kind == "qwen2":
        cfg = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(cfg)
    # larger weights than the init (whose logits are all ~0), non-trivial norms and biases
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            if "norm" in name:
                p.add_(1.0)
    return model.eval()


def tokens_for(seed, V=97):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g)


def hf_reference(d, toks):
    """transformers in fp32 on the directory's weights: logits, loss, grads, greedy."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        d, torch_dtype=torch.float32, attn_implementation="eager").eval()
    out = model(toks, labels=toks)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    seq = toks.clone()
    with torch.no_grad():
        for _ in range(NGEN):
            nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    return out.logits.detach(), out.loss.item(), grads, seq[:, T:], model


def opd_dump(path, toks):
    out = os.path.join(WORK, "dump.safetensors")
    args = [DUMP, path, out, str(B), str(T), str(NGEN)] + [str(int(x)) for x in toks.flatten()]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"hf_dump {path}: {r.stderr.strip()}")
    return load_file(out)


def compare(label, path, hf_dir, toks):
    logits, loss, grads, greedy, model = hf_reference(hf_dir, toks)
    o = opd_dump(path, toks)
    e = ((o["out.logits"] - logits).abs().max() / logits.abs().max()).item()
    worst["logits"] = max(worst["logits"], e)
    report(f"{label}: logits", e <= TOL_LOGITS, f"max err/max|x| {e:.2e} (tol {TOL_LOGITS:.0e})")
    e = abs(o["out.loss"].item() - loss) / max(1.0, loss)
    worst["loss"] = max(worst["loss"], e)
    report(f"{label}: loss", e <= TOL_LOSS, f"{loss:.6f} err {e:.2e} (tol {TOL_LOSS:.0e})")
    ge, gname = 0.0, ""
    for name, g in grads.items():
        key = "grad." + name
        if key not in o:                      # a tied head: its gradient is in the embedding's
            report(f"{label}: grad {name}", name == "lm_head.weight", "not written by opd")
            continue
        err = ((o[key] - g).abs().max() / max(g.abs().max().item(), 1e-12)).item()
        if err > ge:
            ge, gname = err, name
    worst["grad"] = max(worst["grad"], ge)
    report(f"{label}: grads ({len(grads)} tensors)", ge <= TOL_GRAD, f"worst {ge:.2e} in {gname} (tol {TOL_GRAD:.0e})")
    same = torch.equal(o["out.greedy"].long(), greedy)
    report(f"{label}: greedy {NGEN} tokens", same, "" if same else f"opd {o['out.greedy'].tolist()} hf {greedy.tolist()}")
    return model


def opd_info_fails(label, d, *want):
    r = subprocess.run([OPD, "info", d], capture_output=True, text=True)
    err = r.stderr.strip()
    ok = r.returncode != 0 and "\n" not in err and all(w in err for w in want)
    report(f"refuse {label}", ok, f"-> {err}")


def main():
    os.makedirs(WORK, exist_ok=True)
    # --- 1. transformers writes, opd reads
    variants = [  # kind, dtype, tied, theta, max_shard_size
        ("qwen2", torch.float32, False, 1e6, None),
        ("qwen2", torch.bfloat16, True, 1e6, "20KB"),
        ("qwen2", torch.float16, False, 1e4, None),
        ("llama", torch.float32, True, 1e4, "20KB"),
        ("llama", torch.bfloat16, False, 1e4, None),
        ("llama", torch.float32, False, 1e6, None),
    ]
    dirs = {}
    for i, (kind, dt, tied, theta, shard) in enumerate(variants):
        label = f"{kind} {str(dt)[6:]} {'tied' if tied else 'untied'} theta {theta:g}{' sharded' if shard else ''}"
        d = os.path.join(WORK, f"hf{i}")
        model = make_model(kind, tied, theta, 100 + i).to(dt)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(d, safe_serialization=True, **kw)
        if shard:
            n = len([f for f in os.listdir(d) if f.endswith(".safetensors")])
            report(f"{label}: written as {n} shards", n > 1)
        dirs[(kind, dt, tied, shard is not None)] = d
        compare(label, d, d, tokens_for(i))

    # --- 2. opd writes, transformers reads: a student opd has trained (a
    # random init, then 3 SFT steps on the built-in task, whose vocab is 64)
    data = os.path.join(WORK, "task")
    subprocess.run([OPD, "data", "--out", data, "--min-steps", "2", "--max-steps", "3", "--train", "64",
                    "--valid", "8", "--test", "8"], check=True, capture_output=True)
    for qkv, tied in ((1, 0), (0, 1)):
        ck0 = os.path.join(WORK, f"init{qkv}{tied}.safetensors")
        ck = os.path.join(WORK, f"sft{qkv}{tied}.safetensors")
        subprocess.run([OPD, "init", "--vocab", "64", "--d-model", "32", "--layers", "2", "--heads", "4",
                        "--kv-heads", "2", "--ffn", "40", "--max-seq", "64", "--qkv-bias", str(qkv),
                        "--tie-embeddings", str(tied), "--rope-theta", "500000", "--seed", "5", ck0],
                       check=True, capture_output=True)
        subprocess.run([OPD, "sft", "--data", os.path.join(data, "train.csv"), "--init", ck0, "--out", ck,
                        "--steps", "3", "--batch", "8", "--seed", "6"], check=True, capture_output=True)
        # (opd's init gives small logits; the tolerances are relative to their scale)
        d32, d16 = os.path.join(WORK, f"exp{qkv}{tied}"), os.path.join(WORK, f"exp{qkv}{tied}_bf16")
        tokf = os.path.join(WORK, "tokenizer.json")
        shutil.copy(os.path.join(os.environ.get("OPD_SRCDIR", "."), "tests", "bpe_tiny.json"), tokf)
        subprocess.run([OPD, "export", "--model", ck, "--out", d32, "--tokenizer", tokf], check=True, capture_output=True)
        subprocess.run([OPD, "export", "--model", ck, "--out", d16, "--dtype", "bf16"], check=True, capture_output=True)
        arch = json.load(open(os.path.join(d32, "config.json")))["architectures"][0]
        label = f"export {arch} {'tied' if tied else 'untied'}"
        report(f"{label}: tokenizer.json copied",
               open(os.path.join(d32, "tokenizer.json"), "rb").read() == open(tokf, "rb").read())
        toks = torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(qkv))
        m32 = compare(label + " f32 (opd checkpoint vs from_pretrained)", ck, d32, toks)
        m16 = compare(label + " bf16", d16, d16, toks)
        s32, s16 = m32.state_dict(), m16.state_dict()
        exact = all(torch.equal(s32[k].to(torch.bfloat16).float(), s16[k]) for k in s32)
        report(f"{label}: bf16 export == torch's fp32->bf16 rounding, every tensor", exact)

    # --- 3. refusals
    base = dirs[("qwen2", torch.float32, False, False)]
    def variant(name, edit=None):
        d = os.path.join(WORK, "bad_" + name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base, d)
        if edit:
            p = os.path.join(d, "config.json")
            c = json.load(open(p))
            edit(c)
            json.dump(c, open(p, "w"))
        return d
    opd_info_fails("unknown model_type", variant("type", lambda c: c.update(model_type="mistral")),
                   "config.json: key 'model_type'", "mistral")
    opd_info_fails("unknown architecture", variant("arch", lambda c: c.update(architectures=["Qwen2MoeForCausalLM"])),
                   "config.json: key 'architectures'", "Qwen2MoeForCausalLM")
    opd_info_fails("rope_scaling", variant("rope", lambda c: c.update(rope_scaling={"type": "linear", "factor": 2.0})),
                   "config.json: key 'rope_scaling' is not supported")
    opd_info_fails("sliding window", variant("swa", lambda c: c.update(use_sliding_window=True)),
                   "config.json: key 'use_sliding_window'")
    opd_info_fails("shape mismatch", variant("shape", lambda c: c.update(intermediate_size=64)),
                   "model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight'", "[48, 32]", "[64, 32]")
    d = os.path.join(WORK, "bad_f64")
    make_model("qwen2", False, 1e6, 9).to(torch.float64).save_pretrained(d, safe_serialization=True)
    opd_info_fails("F64 weights", d, "model.safetensors: tensor", "dtype F64 is not supported")
    shard_dir = dirs[("qwen2", torch.bfloat16, True, True)]
    d = os.path.join(WORK, "bad_shard")
    shutil.copytree(shard_dir, d)
    gone = sorted(f for f in os.listdir(d) if f.startswith("model-"))[-1]
    os.remove(os.path.join(d, gone))
    opd_info_fails("missing shard", d, "model.safetensors.index.json: missing shard", gone)

    print(f"worst errors: logits {worst['logits']:.2e}, loss {worst['loss']:.2e}, grads {worst['grad']:.2e}")
    print(f"hf cross-check: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
