#!/bin/sh
# opd export and Hugging Face directories on the command line, without
# Python (tests/hf_crosscheck.sh compares with transformers): a model
# exported as f32 is the same model everywhere opd takes one (--teacher,
# --student, --model, info), bit for bit; bad output paths and options fail
# with a clear message and leave nothing behind.
set -u
OPD=${OPD:-./opd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
run() {  # run NAME CMD...: must succeed
    name=$1; shift
    if "$@" >"$dir/out" 2>"$dir/err"; then ok "$name"; else bad "$name (rc $?)"; cat "$dir/out" "$dir/err"; fi
}
expect_fail() {  # expect_fail NAME PATTERN CMD...: non-zero, one line on stderr matching PATTERN
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name: rc $rc"; cat "$dir/err"; return; fi
    if grep -q -- "$pat" "$dir/err"; then ok "$name ($(head -n1 "$dir/err"))"; else bad "$name: stderr lacks '$pat'"; cat "$dir/err"; fi
}
same() {  # same NAME A B: every tensor bit-identical
    if "$OPD" golden check --exact --quiet "$2" "$3" >"$dir/cmp" 2>&1; then ok "$1"; else bad "$1"; tail -5 "$dir/cmp"; fi
}

run "data" "$OPD" data --out "$dir/d" --min-steps 2 --max-steps 4 --train 32 --valid 8 --test 8 --seed 3
run "init teacher" "$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --max-seq 48 --seed 1 "$dir/t.st"
run "init student (Llama-style: no q/k/v bias, tied)" "$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 \
    --ffn 32 --max-seq 48 --qkv-bias 0 --tie-embeddings 1 --seed 2 "$dir/s.st"
run "export teacher f32" "$OPD" export --model "$dir/t.st" --out "$dir/t_hf"
grep -q "Qwen2ForCausalLM" "$dir/t_hf/config.json" && ok "teacher is Qwen2ForCausalLM" || bad "teacher architecture"
run "export student f32" "$OPD" export --model "$dir/s.st" --out "$dir/s_hf/"
grep -q "LlamaForCausalLM" "$dir/s_hf/config.json" && ok "student is LlamaForCausalLM" || bad "student architecture"
run "info on the directory" "$OPD" info "$dir/t_hf"
run "info on its config.json" "$OPD" info "$dir/t_hf/config.json"
run "info on its model.safetensors" "$OPD" info "$dir/t_hf/model.safetensors"
"$OPD" info "$dir/t.st" | tail -n +2 >"$dir/info_st"
"$OPD" info "$dir/t_hf" | tail -n +2 >"$dir/info_hf"
cmp -s "$dir/info_st" "$dir/info_hf" && ok "same config and parameter count as the checkpoint" || bad "info differs"

# the same run from checkpoints and from directories: bit-identical students
common="--data $dir/d/train.csv --batch 2 --samples 2 --lr 1e-2 --seed 5 --method full --steps 2"
run "distill from checkpoints" "$OPD" distill $common --teacher "$dir/t.st" --student "$dir/s.st" --out "$dir/A"
run "distill from HF directories" "$OPD" distill $common --teacher "$dir/t_hf" --student "$dir/s_hf" --out "$dir/B"
same "students bit-identical" "$dir/A/student.safetensors" "$dir/B/student.safetensors"
run "export a distill output (weights + AdamW state)" "$OPD" export --model "$dir/B/student.safetensors" --out "$dir/B_hf"
run "info on it" "$OPD" info "$dir/B_hf"
run "eval --model DIR" "$OPD" eval --model "$dir/t_hf" --data "$dir/d/test.csv" --samples 2 --out "$dir/eval.csv"

# bf16: round to nearest even, exported and read back
run "export bf16" "$OPD" export --model "$dir/t_hf" --out "$dir/t_bf16" --dtype bf16
grep -q '"torch_dtype": "bfloat16"' "$dir/t_bf16/config.json" && ok "torch_dtype bfloat16" || bad "torch_dtype"
run "info bf16 directory" "$OPD" info "$dir/t_bf16"
sz32=$(wc -c <"$dir/t_hf/model.safetensors"); sz16=$(wc -c <"$dir/t_bf16/model.safetensors")
[ "$sz16" -lt "$sz32" ] && ok "bf16 file smaller ($sz16 < $sz32 bytes)" || bad "bf16 size $sz16 vs $sz32"
run "re-export of bf16 as bf16" "$OPD" export --model "$dir/t_bf16" --out "$dir/t_bf16b" --dtype bf16
cmp -s "$dir/t_bf16/model.safetensors" "$dir/t_bf16b/model.safetensors" && ok "bf16 -> f32 -> bf16 is exact" || bad "bf16 re-export differs"

# tokenizer files are copied under their own names
cp "${OPD_SRCDIR:-.}/tests/bpe_tiny.json" "$dir/tokenizer.json"
printf '{"model_max_length": 48}\n' >"$dir/tokenizer_config.json"
run "export with tokenizer files" "$OPD" export --model "$dir/t.st" --out "$dir/t_tok" \
    --tokenizer "$dir/tokenizer.json" --tokenizer "$dir/tokenizer_config.json"
cmp -s "$dir/tokenizer.json" "$dir/t_tok/tokenizer.json" && cmp -s "$dir/tokenizer_config.json" "$dir/t_tok/tokenizer_config.json" \
    && ok "tokenizer files copied" || bad "tokenizer files"

# refusals
expect_fail "export into a non-empty directory" "exists and is not empty" "$OPD" export --model "$dir/t.st" --out "$dir/t_hf"
expect_fail "export --dtype f16" "is not f32 or bf16" "$OPD" export --model "$dir/t.st" --out "$dir/x" --dtype f16
expect_fail "export without --out" "are required" "$OPD" export --model "$dir/t.st"
expect_fail "export a missing tokenizer file" "no_such.json: not a readable file" "$OPD" export --model "$dir/t.st" --out "$dir/x" --tokenizer "$dir/no_such.json"
expect_fail "export into a missing parent" "cannot create a temporary directory" "$OPD" export --model "$dir/t.st" --out "$dir/no/such/x"
[ -e "$dir/x" ] && bad "a failed export left $dir/x" || ok "failed exports leave nothing"
ls "$dir" | grep -q '\.tmp-' && bad "temporary directory left behind" || ok "no temporary directory left"
mkdir "$dir/empty"
expect_fail "info on an empty directory" "empty: no config.json" "$OPD" info "$dir/empty"
cp "$dir/t_hf/config.json" "$dir/empty/"
expect_fail "info on a directory without weights" "neither model.safetensors nor" "$OPD" info "$dir/empty"

echo "test_export: $pass passed, $fail failed"
[ $fail -eq 0 ]
