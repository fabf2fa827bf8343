"""Independent cross-check of the reference model against PyTorch.

Reads a safetensors file written by tests/crosscheck_dump (a random model, a
left-padded batch, and the reference's logits, loss and every gradient),
rebuilds the same Qwen2-style decoder in PyTorch from the spec, runs it in
float64, and compares. The safetensors reader is written here with json +
numpy on purpose: it checks our file format against the published layout too.

Tolerances (fp32 reference vs fp64 PyTorch):
  logits    max abs error  <= 1e-5   (|logits| ~ 1; fp32 rounding through
                                      2 layers of sums of ~32-48 terms gives
                                      ~1e-6 measured: 10x headroom)
  loss      abs error      <= 1e-6   (~1e-7 measured)
  gradients max abs error / max |grad| of the tensor <= 1e-5 (~1e-6 measured),
            i.e. relative to the tensor's scale: elementwise relative error is
            meaningless for entries that are ~0.
"""
import json
import struct
import sys

import numpy as np
import torch

DT = {"F32": np.float32, "I32": np.int32, "F64": np.float64, "U8": np.uint8, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DT[info["dtype"]]).reshape(info["shape"])
        out[name] = arr.copy()
    return meta, out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    # x (B, T, nh, hd); rotate-half convention (pairs i, i + hd/2)
    hd = x.shape[-1]
    inv = theta ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
    ang = pos[..., None].double() * inv                   # (B, T, hd/2)
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, :, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


def forward(W, cfg, tokens, pad):
    B, T = tokens.shape
    C, NH, NKV = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"]
    hd = C // NH
    eps, theta = cfg["rms_eps"], cfg["rope_theta"]
    t = torch.arange(T)[None, :]
    pos = (t - pad[:, None]).clamp(min=0)
    # key j visible to query i iff pad <= j <= i; a pad query sees only itself
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    causal = j <= i
    valid = causal[None] & (j[None] >= pad[:, None, None])
    selfonly = (i == j)[None] & (i[None] < pad[:, None, None])
    allowed = valid | selfonly                              # (B, T, T)
    x = W["model.embed_tokens.weight"][tokens]
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        def proj(name, inp):
            y = inp @ W[p + name + ".weight"].T
            if (p + name + ".bias") in W:
                y = y + W[p + name + ".bias"]
            return y
        q = proj("self_attn.q_proj", h).view(B, T, NH, hd)
        k = proj("self_attn.k_proj", h).view(B, T, NKV, hd)
        v = proj("self_attn.v_proj", h).view(B, T, NKV, hd)
        q, k = rope(q, pos, theta), rope(k, pos, theta)
        rep = NH // NKV
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        s = torch.einsum("bihd,bjhd->bhij", q, k) / (hd ** 0.5)
        s = s.masked_fill(~allowed[:, None], float("-inf"))
        a = torch.softmax(s, -1)
        y = torch.einsum("bhij,bjhd->bihd", a, v).reshape(B, T, C)
        x = x + y @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    return x @ head.T


def main(path):
    meta, T = read_safetensors(path)
    cfg = {k[4:]: float(v) if "." in v or "e" in v else int(v)
           for k, v in meta.items() if k.startswith("opd.")}
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in T.items() if not k.startswith(("grad.", "in.", "out."))}
    tokens = torch.tensor(T["in.tokens"], dtype=torch.long)
    targets = torch.tensor(T["in.targets"], dtype=torch.long)
    mask = torch.tensor(T["in.mask"], dtype=torch.float64)
    pad = torch.tensor(T["in.pad"], dtype=torch.long)
    logits = forward(W, cfg, tokens, pad)
    lp = torch.log_softmax(logits, -1)
    nll = -lp.gather(-1, targets[..., None])[..., 0]
    loss = (nll * mask).sum() / mask.sum()
    loss.backward()

    failures = 0
    def report(name, err, tol):
        nonlocal failures
        ok = err <= tol
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:48s} err {err:.3e}  tol {tol:.0e}")

    report("logits (max abs)", float(np.abs(logits.detach().numpy() - T["out.logits"]).max()), 1e-5)
    report("loss (abs)", abs(loss.item() - float(T["out.loss"][0])), 1e-6)
    for name, w in W.items():
        g_ref = T["grad." + name]
        g = w.grad.numpy()
        scale = max(np.abs(g).max(), 1e-12)
        report("grad " + name + " (max abs / max|g|)", float(np.abs(g - g_ref).max() / scale), 1e-5)
    n = 2 + len(W)
    print(f"torch cross-check {path}: {n - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
