#!/bin/sh
# opd golden write --config at a small real-model-like shape (GQA, head_dim
# 16, K = 64 and 176, vocab 300): the same bits on every ISA path and thread
# count, and the OpenBLAS backend within the manifest's tolerances.
set -u
OPD=${OPD:-./opd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
mkdir -p "$dir/cfg"
cat >"$dir/cfg/config.json" <<'JSON'
{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 176,
 "num_hidden_layers": 28, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
 "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "hidden_act": "silu",
 "tie_word_embeddings": false}
JSON
w() {  # w NAME ENV... -- ARGS...: write into $dir/NAME
    name=$1; shift
    if env "$@" "$OPD" golden write --config "$dir/cfg/config.json" --layers 2 ${keep:-} "$dir/$name" >"$dir/out" 2>&1; then
        ok "write $name"; else bad "write $name"; cat "$dir/out"; fi
}
w a OMP_NUM_THREADS=1
w b OMP_NUM_THREADS=2 OPD_ISA=scalar
grep -q avx2 /proc/cpuinfo 2>/dev/null && w c OMP_NUM_THREADS=2 OPD_ISA=avx2 || cp -r "$dir/a" "$dir/c"
for x in b c; do
    if "$OPD" golden check --exact --quiet "$dir/a" "$dir/$x" >"$dir/cmp" 2>&1; then ok "a = $x, bit for bit"
    else bad "a != $x"; tail -5 "$dir/cmp"; fi
done
keep=--keep-backend w blas OMP_NUM_THREADS=2 OPD_MATMUL=blas
if grep -q "built without" "$dir/out"; then
    echo "skip: this opd has no OpenBLAS backend"
elif "$OPD" golden check --quiet "$dir/a" "$dir/blas" >"$dir/cmp" 2>&1; then
    # and not by being the same bits: then the check above says nothing
    n=$("$OPD" golden check --exact --quiet "$dir/a" "$dir/blas" 2>&1 | tail -1)
    ok "OpenBLAS within tolerance ($(tail -1 "$dir/cmp"); bit for bit: $n)"
else bad "OpenBLAS outside tolerance"; cat "$dir/cmp"; fi
echo "golden shape: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
