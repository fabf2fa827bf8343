#!/bin/sh
# PyTorch cross-check of logits, loss and every gradient (tests/torch_crosscheck.py),
# for a GQA + q/k/v bias + untied model and an MHA + tied model; then the
# committed golden step (tests/torch_golden.py).
set -u
PY=${DEBIAN_PYTHON:-/usr/bin/python3}
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "SKIP: $PY cannot import torch and numpy (apt-get install python3-torch python3-numpy)"
    exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
rc=0
for variant in "1 0" "0 1"; do
    set -- $variant
    f="$dir/xcheck_gqa$1_tied$2.safetensors"
    "${OPD_BUILDDIR:-.}/tests/crosscheck_dump" "$f" "$1" "$2" || { echo "FAIL: crosscheck_dump $1 $2"; exit 1; }
    "$PY" "${OPD_SRCDIR:-.}/tests/torch_crosscheck.py" "$f" || rc=1
done
# the committed golden step: logits, log-probs, full reverse KL and its gradients
"$PY" "${OPD_SRCDIR:-.}/tests/torch_golden.py" "${OPD_SRCDIR:-.}/golden/golden_step.safetensors" || rc=1
exit $rc
