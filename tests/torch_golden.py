"""PyTorch check of the committed golden step (golden/golden_step.safetensors).

Rebuilds the golden student and teacher in float64 PyTorch from the weights
stored in the golden file ("student.<hf name>", "teacher.<hf name>", configs
in __metadata__), runs them on the golden scored sequence "step.tokens" with
the left padding "input.pad", and compares against the reference's tensors:

  student.logits, teacher.logits      max abs error <= 1e-4
      (fp32 reference vs fp64 torch; |logits| ~ 1-5, 2 layers of sums of
       16-48 terms)
  step.teacher_logprobs,
  step.student_logprobs               max abs error <= 1e-5
  loss.rkl-full.value                 abs error <= 1e-5
  loss.rkl-full.rkl (per token)       max abs error <= 1e-5
  loss.rkl-full.student.grad.*        max abs error / max |grad| <= 1e-4
      (relative to the tensor's scale: entries near 0 have no meaningful
       relative error)

The full-vocabulary reverse KL is recomputed from its definition (ref/SPEC.md section 4):
KL_t = sum_v pi_s(v) (log pi_s(v) - log pi_t(v)), teacher detached, token mean
over the rollout mask, differentiated exactly through pi_s. The model code is
tests/torch_crosscheck.py's (the same spec), imported.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_crosscheck import forward, read_safetensors  # noqa: E402


def config(meta, who):
    out = {}
    for k, v in meta.items():
        if k.startswith(who + "."):
            key = k[len(who) + 1:]
            out[key] = float(v) if ("." in v or "e" in v) else int(v)
    return out


def weights(T, who):
    p = who + "."
    return {k[len(p):]: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in T.items() if k.startswith(p) and (k[len(p):].startswith("model.")
                                                       or k[len(p):] == "lm_head.weight")}


def main(path):
    meta, T = read_safetensors(path)
    scfg, tcfg = config(meta, "student"), config(meta, "teacher")
    Ws, Wt = weights(T, "student"), weights(T, "teacher")
    tokens = torch.tensor(T["step.tokens"], dtype=torch.long)
    pad = torch.tensor(T["input.pad"], dtype=torch.long)
    y = torch.tensor(T["step.y"], dtype=torch.long)
    mask = torch.tensor(T["step.mask"], dtype=torch.float64)
    P = T["input.prompts"].shape[1]
    Hs = y.shape[1]

    s_logits = forward(Ws, scfg, tokens, pad)
    with torch.no_grad():
        t_logits = forward(Wt, tcfg, tokens, pad)
    # rows P-1 .. P+Hs-2 predict the rollout tokens y
    s_lp = torch.log_softmax(s_logits[:, P - 1:P - 1 + Hs], -1)
    t_lp = torch.log_softmax(t_logits[:, P - 1:P - 1 + Hs], -1)
    kl = (s_lp.exp() * (s_lp - t_lp)).sum(-1)               # (B, Hs)
    loss = (kl * mask).sum() / mask.sum()
    loss.backward()

    failures = 0
    checks = 0

    def report(name, err, tol):
        nonlocal failures, checks
        ok = err <= tol
        failures += not ok
        checks += 1
        print(f"{'ok  ' if ok else 'FAIL'} {name:64s} err {err:.3e}  tol {tol:.0e}")

    def maxabs(a, b):
        return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())

    report("student.logits (max abs)", maxabs(s_logits.detach().numpy(), T["student.logits"]), 1e-4)
    report("teacher.logits (max abs)", maxabs(t_logits.numpy(), T["teacher.logits"]), 1e-4)
    gather = lambda lp: lp.detach().gather(-1, y[..., None])[..., 0].numpy()
    report("step.teacher_logprobs (max abs)", maxabs(gather(t_lp), T["step.teacher_logprobs"]), 1e-5)
    report("step.student_logprobs (max abs)", maxabs(gather(s_lp), T["step.student_logprobs"]), 1e-5)
    report("loss.rkl-full.value (abs)", abs(loss.item() - float(T["loss.rkl-full.value"][0])), 1e-5)
    m = mask.numpy() > 0
    report("loss.rkl-full.rkl (max abs over the mask)",
           maxabs(kl.detach().numpy()[m], T["loss.rkl-full.rkl"][m]), 1e-5)
    for name, w in Ws.items():
        g_ref = T["loss.rkl-full.student.grad." + name]
        g = w.grad.numpy()
        scale = max(np.abs(g).max(), 1e-12)
        report("grad " + name + " (max abs / max|g|)", maxabs(g, g_ref) / scale, 1e-4)
    print(f"torch golden check {path}: {checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
