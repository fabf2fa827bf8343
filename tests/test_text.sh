#!/bin/sh
# opd distill / eval on text prompts end to end: tiny random Hugging Face
# Qwen2 teacher and student and a byte-level BPE tokenizer.json made by
# tests/text_fixtures.py in the build's venv (tests/pyenv.sh), a JSONL prompt
# file; TOPD with rho 0.5 for 3 steps, then the bad inputs, each a non-zero
# exit with one line naming the file.
set -u
OPD=${OPD:-./opd}
build=${OPD_BUILDDIR:-.}
src=${OPD_SRCDIR:-.}
venv="$build/.venv-test"
sh "$src/tests/pyenv.sh" "$venv" || { echo "FAIL: no Python environment (tests/pyenv.sh)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
run() {  # run NAME CMD...: must succeed
    name=$1; shift
    if "$@" >"$dir/out" 2>"$dir/err"; then ok "$name"; else bad "$name (rc $?)"; cat "$dir/out" "$dir/err"; fi
}
expect_fail() {  # expect_fail NAME PATTERN CMD...: non-zero, exactly one line on stderr, matching PATTERN
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name: rc $rc"; cat "$dir/err"; return; fi
    if [ "$(wc -l <"$dir/err")" -ne 1 ]; then bad "$name: stderr is not one line"; cat "$dir/err"; return; fi
    if grep -q -- "$pat" "$dir/err"; then ok "$name ($(cat "$dir/err"))"; else bad "$name: stderr lacks '$pat'"; cat "$dir/err"; fi
}

HF_HUB_OFFLINE=1 "$venv/bin/python" "$src/tests/text_fixtures.py" "$dir" >"$dir/fix.log" 2>&1 ||
    { cat "$dir/fix.log"; echo "FAIL: tests/text_fixtures.py"; exit 1; }
tok="$dir/tokenizer.json"
P="--prompts $dir/prompts.jsonl --tokenizer $tok --chat-template chatml"

run "distill topd rho 0.5, 3 steps" "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" $P \
    --max-new-tokens 8 --method topd --rho 0.5 --steps 3 --batch 2 --seed 5 --out "$dir/run" --eval "$dir/prompts.jsonl"
rows=$(tail -n +2 "$dir/run/log.csv" | wc -l)
[ "$rows" -eq 3 ] && ok "log.csv has 3 step rows" || bad "log.csv has $rows rows"
# TOPD: H_k = ceil(rho * T) = 4 at every step
hs=$(tail -n +2 "$dir/run/log.csv" | cut -d, -f2 | tr '\n' ' ')
[ "$hs" = "4 4 4 " ] && ok "H_k follows the schedule ($hs)" || bad "H_k: '$hs', want '4 4 4 '"
erows=$(tail -n +2 "$dir/run/eval.csv" | wc -l)
[ "$erows" -eq 2 ] && ok "eval.csv has the step-0 and final rows" || bad "eval.csv has $erows rows"
run "the checkpoint loads" "$OPD" info "$dir/run/student.safetensors"
run "eval prints a score" "$OPD" eval --model "$dir/run/student.safetensors" $P --max-new-tokens 8
grep -q "greedy pass@1" "$dir/out" && grep -q "not scored (no answer) | 1 " "$dir/out" &&
    ok "eval: a pass@1 line, the prompt without an answer counted" || { bad "eval output"; cat "$dir/out"; }
# POPD and the full horizon run on the same inputs
run "distill popd" "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" $P \
    --max-new-tokens 8 --method popd --h0 2 --dh 2 --dk 1 --steps 3 --batch 2 --out "$dir/popd"
hs=$(tail -n +2 "$dir/popd/log.csv" | cut -d, -f2 | tr '\n' ' ')
[ "$hs" = "2 4 6 " ] && ok "POPD H_k = 2, 4, 6" || bad "POPD H_k: '$hs'"
# an interrupted run resumed is the uninterrupted one, bit for bit
run "distill --stop-after 1" "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" $P \
    --max-new-tokens 8 --method topd --rho 0.5 --steps 3 --batch 2 --seed 5 --out "$dir/re" --stop-after 1
run "distill --resume" "$OPD" distill --teacher "$dir/teacher" $P \
    --max-new-tokens 8 --method topd --rho 0.5 --steps 3 --batch 2 --seed 5 --out "$dir/re" --resume
if "$OPD" golden check --exact --quiet "$dir/run/student.safetensors" "$dir/re/student.safetensors" >"$dir/cmp" 2>&1; then
    ok "resumed run = uninterrupted run (bit-identical student)"
else bad "resumed run differs"; tail -5 "$dir/cmp"; fi

# bad inputs
expect_fail "tokenizer ids past the models' vocab" "small_vocab: vocab_size 200 is smaller than the tokenizer's [0-9]* ids ($tok)" \
    "$OPD" distill --teacher "$dir/small_vocab" --student "$dir/small_vocab" $P --steps 1 --out "$dir/x1"
expect_fail "teacher / student vocab differ" "teacher $dir/teacher has vocab_size 320, student $dir/other_vocab has 384" \
    "$OPD" distill --teacher "$dir/teacher" --student "$dir/other_vocab" $P --steps 1 --out "$dir/x2"
expect_fail "eval: tokenizer ids past the model's vocab" "small_vocab: vocab_size 200" \
    "$OPD" eval --model "$dir/small_vocab" $P
expect_fail "a prompt longer than max positions" "long.jsonl:2: .* exceed the max_seq_len 64 of $dir/teacher" \
    "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" --prompts "$dir/long.jsonl" --tokenizer "$tok" \
    --max-new-tokens 8 --steps 1 --out "$dir/x3"
expect_fail "malformed JSONL line" "bad.jsonl:2: not JSON" \
    "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" --prompts "$dir/bad.jsonl" --tokenizer "$tok" \
    --steps 1 --out "$dir/x4"
expect_fail "eval: malformed JSONL line" "bad.jsonl:2: not JSON" "$OPD" eval --model "$dir/teacher" --prompts "$dir/bad.jsonl" --tokenizer "$tok"
expect_fail "not a tokenizer.json" "teacher/config.json: " \
    "$OPD" eval --model "$dir/teacher" --prompts "$dir/prompts.jsonl" --tokenizer "$dir/teacher/config.json"
# the built-in task's character tokenizer against a real model's vocab
"$OPD" data --out "$dir/data" --train 8 --valid 8 --test 8 >/dev/null
expect_fail "eval on the built-in task refuses vocab 320" "$dir/teacher: vocab_size 320 is not the 64 of the task's character tokenizer" \
    "$OPD" eval --model "$dir/teacher" --data "$dir/data/test.csv"
expect_fail "distill on the built-in task refuses vocab 320" "teacher $dir/teacher 320, student $dir/student 320" \
    "$OPD" distill --teacher "$dir/teacher" --student "$dir/student" --data "$dir/data/train.csv" --out "$dir/x5"

echo "text: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
