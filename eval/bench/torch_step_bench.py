"""PyTorch eager baseline for `opd bench step`: the same OPD step, timed.

A benchmark, not a test: it runs one on-policy distillation step (ref/SPEC.md
section 6) of the `opd bench step` configuration in PyTorch on the CPU, so that the
project can state "an opd step is N x faster than PyTorch eager" on the same
machine and thread count. Run it with Debian's interpreter, which has torch:

    /usr/bin/python3 eval/torch_step_bench.py [--threads 2] [--steps 3]
                     [--rho 1 0.25 0.1] [--json out.json]

The step, per horizon H = ceil(rho * T):
  1. rollout: batched autoregressive sampling from the student under no_grad,
     prompt prefilled in one forward, then one token per forward with a KV
     cache (tensors of P + H positions per layer, preallocated, one position
     written per token); temperature 1 multinomial sampling, no EOS (every
     sequence generates exactly H tokens); the sampler's log-probs recorded.
  2. teacher: one forward over [prompt; rollout[:-1]] (B, P + H - 1) under
     no_grad, log-softmax at the H rows that predict the rollout tokens.
  3. student: the same forward with grad; token-level sampled reverse KL
     (ref/SPEC.md section 4, opd's default "rkl" loss):
         r = (log pt(y) - log ps(y)).detach()
         w = exp(log ps(y) - sampler_lp).detach()
         loss = -(w * r * log ps(y)).mean()     over the B*H tokens
     plus the full-vocabulary reverse KL of each token under no_grad (opd's
     loss computes it for the step's log), then backward.
  4. optimizer: clip_grad_norm_(1.0), AdamW(lr 1e-3, betas (0.9, 0.95),
     eps 1e-8, weight decay 0.01 on matrices only, as opd), zero_grad.

Matched with opd (ref/model.c, ref/opd_step.c, eval/bench_step.c): the model
(Qwen2/Llama-style decoder, fp32, q/k/v bias, RoPE rotate-half theta 10000,
RMSNorm eps 1e-6, SwiGLU, untied LM head, MHA), the sizes (student d=128 L=4
4 heads ffn 512; teacher d=256 L=6 8 heads ffn 1024; V=64; B=16; P=32;
T=256), the init (N(0, 0.02), o/down projections scaled by 1/sqrt(2L), norms 1,
biases 0), the work of each phase, one warm-up step then the mean of --steps,
and one process per horizon for the peak RSS.

Not matched, on purpose or by necessity:
  - eager mode only: no torch.compile (torch 1.13 has none), no TorchScript,
    no JIT fusion; this is the baseline a researcher gets by writing the model.
  - attention is the manual softmax(q k^T / sqrt(hd) + causal mask) v:
    torch.nn.functional.scaled_dot_product_attention arrived in torch 2.0.
  - sampling uses torch's generator, not opd's counter-based Philox, so the
    tokens differ (the work does not: no EOS, every rollout has H tokens).
  - AdamW is torch's default CPU implementation (per-tensor loop; foreach is
    only the default on CUDA), and gradients are set to None after the step.
  - the rollout computes the LM head only at the last prompt position during
    prefill (the other rows are never sampled from).

Timing needs a quiet machine: torch's OpenMP pool waits at a barrier after
every parallel op, so when other processes hold the cores a 2-thread run can
be several times slower than a 1-thread one (measured: an elementwise mul at
11 ms instead of 22 us). Compare against --threads 1 before trusting a row.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

# `opd bench step`'s configuration (eval/bench_step.c)
STUDENT = dict(d_model=128, n_layers=4, n_heads=4, d_ff=512)
TEACHER = dict(d_model=256, n_layers=6, n_heads=8, d_ff=1024)
VOCAB, BATCH, PROMPT, HORIZON = 64, 16, 32, 256
ROPE_THETA, RMS_EPS = 10000.0, 1e-6


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Block(nn.Module):
    def __init__(self, d, n_heads, d_ff):
        super().__init__()
        self.n_heads, self.hd = n_heads, d // n_heads
        self.input_layernorm = RMSNorm(d)
        self.q_proj = nn.Linear(d, d, bias=True)
        self.k_proj = nn.Linear(d, d, bias=True)
        self.v_proj = nn.Linear(d, d, bias=True)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d)
        self.gate_proj = nn.Linear(d, d_ff, bias=False)
        self.up_proj = nn.Linear(d, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d, bias=False)

    def attention(self, x, cos, sin, start, cache):
        """x (B, S, C) at positions start .. start+S-1. With a cache (k, v of
        shape (B, NH, cap, hd)), writes those positions and attends over
        0 .. start+S-1; without one, plain causal self-attention."""
        B, S, C = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, S, self.n_heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, S, self.n_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, S, self.n_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        end = start + S
        if cache is not None:
            kc, vc = cache
            kc[:, :, start:end] = k
            vc[:, :, start:end] = v
            k, v = kc[:, :, :end], vc[:, :, :end]
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))   # (B, NH, S, end)
        if S > 1:   # a single query (decode) sees every cached position
            qpos = torch.arange(start, end)[:, None]
            s = s.masked_fill(torch.arange(end)[None, :] > qpos, float("-inf"))
        y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, S, C)
        return x + self.o_proj(y)

    def forward(self, x, cos, sin, start=0, cache=None):
        x = self.attention(x, cos, sin, start, cache)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Decoder(nn.Module):
    def __init__(self, d_model, n_layers, n_heads, d_ff, vocab=VOCAB, max_seq=PROMPT + HORIZON):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(Block(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.norm = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        hd = d_model // n_heads
        inv = ROPE_THETA ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
        ang = torch.arange(max_seq, dtype=torch.float64)[:, None] * inv   # (max_seq, hd/2)
        self.register_buffer("cos", torch.cat([ang.cos(), ang.cos()], -1).float(), persistent=False)
        self.register_buffer("sin", torch.cat([ang.sin(), ang.sin()], -1).float(), persistent=False)
        self.reset_parameters(n_layers)

    def reset_parameters(self, n_layers):
        # opd_model_init_random: norms 1, biases 0, matrices N(0, 0.02) with the
        # residual-stream writers (o_proj, down_proj) scaled by 1/sqrt(2L)
        for name, p in self.named_parameters():
            if "norm" in name:
                nn.init.ones_(p)
            elif p.dim() == 1:
                nn.init.zeros_(p)
            else:
                std = 0.02 / math.sqrt(2 * n_layers) if ("o_proj" in name or "down_proj" in name) else 0.02
                nn.init.normal_(p, 0.0, std)

    def new_cache(self, B, cap):
        return [(torch.zeros(B, blk.n_heads, cap, blk.hd), torch.zeros(B, blk.n_heads, cap, blk.hd))
                for blk in self.layers]

    def forward(self, tokens, start=0, cache=None, last_only=False):
        """tokens (B, S) at positions start ..; logits (B, S, V), or (B, 1, V)
        for the last position only."""
        S = tokens.shape[1]
        cos, sin = self.cos[start:start + S], self.sin[start:start + S]
        x = self.embed_tokens(tokens)
        for l, blk in enumerate(self.layers):
            x = blk(x, cos, sin, start, cache[l] if cache is not None else None)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm(x))


def adamw(model):
    # opd decays matrices only (ref/model.c, opd_param_tensors: decay flag)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-3, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def rollout(student, prompts, H):
    """Sample H tokens per sequence (temperature 1, no EOS). Returns the
    sequences (B, P + H) and the sampler's log-probs (B, H)."""
    B, P = prompts.shape
    seq = torch.empty(B, P + H, dtype=torch.long)
    seq[:, :P] = prompts
    lps = torch.empty(B, H)
    cache = student.new_cache(B, P + H)
    logits = student(prompts, 0, cache, last_only=True)          # prefill
    for t in range(H):
        if t > 0:                                                 # decode one position
            logits = student(seq[:, P + t - 1:P + t], P + t - 1, cache)
        lp = torch.log_softmax(logits[:, -1], -1)                 # (B, V)
        y = torch.multinomial(lp.exp(), 1)                        # (B, 1)
        seq[:, P + t] = y[:, 0]
        lps[:, t] = lp.gather(-1, y)[:, 0]
    return seq, lps


def opd_step(student, teacher, opt, prompts, H, times):
    """One OPD step; adds each phase's seconds to times[phase]."""
    P = prompts.shape[1]
    t0 = time.perf_counter()
    seq, sampler_lp = rollout(student, prompts, H)
    t1 = time.perf_counter()

    inp, y = seq[:, :P + H - 1], seq[:, P:]                       # rows P-1.. predict y
    with torch.no_grad():
        lpt_all = torch.log_softmax(teacher(inp)[:, P - 1:], -1)  # (B, H, V)
        lpt = lpt_all.gather(-1, y[..., None])[..., 0]
    t2 = time.perf_counter()

    lps_all = torch.log_softmax(student(inp)[:, P - 1:], -1)
    lps = lps_all.gather(-1, y[..., None])[..., 0]
    r = (lpt - lps).detach()
    w = torch.exp(lps - sampler_lp).detach()
    loss = -(w * r * lps).mean()
    with torch.no_grad():   # the step's logged mean reverse KL, as opd's loss does
        rkl = (lps_all.exp() * (lps_all - lpt_all)).sum(-1).mean()
    loss.backward()
    t3 = time.perf_counter()

    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    t4 = time.perf_counter()
    for name, a, b in (("rollout", t0, t1), ("teacher", t1, t2), ("student", t2, t3), ("optim", t3, t4)):
        times[name] += b - a
    return loss.item(), rkl.item()


def bench_one(rho, steps, threads):
    """One horizon in this process: a dict of mean seconds per phase."""
    torch.set_num_threads(threads)
    H = math.ceil(rho * HORIZON - 1e-6)   # opd's truncated schedule: ceil(rho * T)
    torch.manual_seed(1)
    student = Decoder(**STUDENT)
    torch.manual_seed(2)
    teacher = Decoder(**TEACHER)
    teacher.requires_grad_(False)
    opt = adamw(student)
    torch.manual_seed(9)
    prompts = torch.randint(3, VOCAB, (BATCH, PROMPT))
    opd_step(student, teacher, opt, prompts, H, dict.fromkeys(("rollout", "teacher", "student", "optim"), 0.0))
    times = dict.fromkeys(("rollout", "teacher", "student", "optim"), 0.0)
    for _ in range(steps):
        loss, rkl = opd_step(student, teacher, opt, prompts, H, times)
    row = {"rho": rho, "H": H, **{k: v / steps for k, v in times.items()}}
    row["total"] = sum(times.values()) / steps
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux
    row["loss"], row["mean_rkl"] = loss, rkl
    return row


def fmt_row(r):
    return (f"| {r['rho']:5.2f} | {r['H']:4d} | {r['rollout']:8.3f} | {r['teacher']:8.3f} | "
            f"{r['student']:8.3f} | {r['optim']:8.3f} | {r['total']:8.3f} | {r['peak_rss_mib']:9.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up (default 3)")
    ap.add_argument("--rho", type=float, nargs="+", default=[1.0, 0.25, 0.1],
                    help="horizon fractions, H = ceil(rho * T) (default 1 0.25 0.1)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows (and the setup) as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:   # one horizon, one JSON line on stdout, for the parent
        print(json.dumps(bench_one(a.rho[0], a.steps, a.threads)))
        return 0

    print(f"PyTorch {torch.__version__} eager, {a.threads} threads: OPD step, batch {BATCH}, "
          f"prompt {PROMPT}, T = {HORIZON}, mean of {a.steps} steps after a warm-up")
    print("| rho   |  H   | rollout  | teacher  | student  | optim    | total s  | peak MiB  |")
    print("|-------|------|----------|----------|----------|----------|----------|-----------|")
    sys.stdout.flush()
    rows = []
    for rho in a.rho:
        if len(a.rho) == 1:
            row = bench_one(rho, a.steps, a.threads)
        else:   # a process per horizon: peak RSS only grows within one
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--rho", str(rho),
                                  "--steps", str(a.steps), "--threads", str(a.threads)],
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(fmt_row(row))
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": a.threads, "steps": a.steps,
                       "batch": BATCH, "prompt": PROMPT, "T": HORIZON, "rows": rows}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
