#!/bin/sh
# opd distill end to end on tiny models: resume is bit-identical, the thread
# count does not change a bit, the horizon really bounds the rollouts (TOPD,
# POPD), and bad input fails with a clear message.
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
expect_fail() {  # expect_fail NAME PATTERN CMD...
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name: rc $rc"; cat "$dir/err"; return; fi
    if grep -q -- "$pat" "$dir/err"; then ok "$name ($(head -n1 "$dir/err"))"; else bad "$name: stderr lacks '$pat'"; cat "$dir/err"; fi
}
# col FILE NAME: the column NAME of a CSV (header row names it), one value a line
col() { awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } { print $c }' "$1"; }
same() {  # same NAME A B: every tensor bit-identical
    if "$OPD" golden check --exact --quiet "$2" "$3" >"$dir/cmp" 2>&1; then ok "$1"; else bad "$1"; tail -5 "$dir/cmp"; fi
}

run "data" "$OPD" data --out "$dir/d" --min-steps 2 --max-steps 4 --train 64 --valid 8 --test 8 --seed 3
run "init teacher" "$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --max-seq 48 --seed 1 "$dir/t.st"
run "init student" "$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --seed 2 "$dir/s.st"
common="--teacher $dir/t.st --student $dir/s.st --data $dir/d/train.csv --batch 3 --samples 2 --lr 1e-2 --seed 5"

# --- resume: 4 steps straight == 2 steps, stop, resume for 2 more
run "distill 4 steps" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --steps 4 --out "$dir/A"
run "distill stopped after 2" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --steps 4 --stop-after 2 --out "$dir/B"
grep -q "stopped after step 2" "$dir/out" || bad "--stop-after says where it stopped"
run "distill resumed" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --steps 4 --resume --out "$dir/B"
grep -q "resuming .* at step 2" "$dir/out" || bad "--resume says where it resumes"
same "resumed run is bit-identical (weights and AdamW moments)" "$dir/A/student.safetensors" "$dir/B/student.safetensors"
[ "$(col "$dir/A/log.csv" loss)" = "$(col "$dir/B/log.csv" loss)" ] && ok "resumed log has the same losses" || bad "resumed log differs"

# --- threads: the whole pipeline gives the same bits with 1 and 2 threads
run "distill, 1 thread" env OMP_NUM_THREADS=1 "$OPD" distill $common --method full --steps 2 --out "$dir/T1"
run "distill, 2 threads" env OMP_NUM_THREADS=2 "$OPD" distill $common --method full --steps 2 --out "$dir/T2"
same "1 vs 2 threads bit-identical" "$dir/T1/student.safetensors" "$dir/T2/student.safetensors"
# the same at the demo's shapes (longer sequences, the demo's model sizes),
# where matmul kernels that split work by thread count show it (oneDNN does:
# this is why BLAS is the default backend)
run "demo-size data" "$OPD" data --out "$dir/d2" --min-steps 8 --max-steps 10 --train 64 --valid 8 --test 8 --seed 4
run "init demo-size teacher" "$OPD" init --d-model 128 --layers 4 --heads 4 --kv-heads 2 --ffn 384 --max-seq 128 --seed 3 "$dir/t128.st"
run "init demo-size student" "$OPD" init --d-model 64 --layers 2 --heads 4 --kv-heads 2 --ffn 192 --max-seq 128 --seed 4 "$dir/s64.st"
for n in 1 2; do
    run "demo-size distill, $n thread(s)" env OMP_NUM_THREADS=$n "$OPD" distill --teacher "$dir/t128.st" \
        --student "$dir/s64.st" --data "$dir/d2/train.csv" --batch 32 --steps 1 --seed 5 --out "$dir/D$n"
done
same "demo-size shapes: 1 vs 2 threads bit-identical" "$dir/D1/student.safetensors" "$dir/D2/student.safetensors"

# --- TOPD: every step's horizon is ceil(rho * T), no rollout is longer
run "topd rho 0.25, T 20" "$OPD" distill $common --method topd --rho 0.25 --max-new-tokens 20 --steps 3 --out "$dir/topd"
h=$(col "$dir/topd/log.csv" horizon | sort -u | tr '\n' ' ')
[ "$h" = "5 " ] && ok "TOPD horizon is ceil(0.25 * 20) = 5 at every step" || bad "TOPD horizons: '$h'"
mx=$(col "$dir/topd/log.csv" trained_len | sort -n | tail -1)
[ "$mx" -le 5 ] && ok "TOPD rollouts at most 5 tokens (longest $mx)" || bad "TOPD rollout of $mx tokens"
tk=$(col "$dir/topd/log.csv" tokens | sort -n | tail -1)
[ "$tk" -le 30 ] && ok "TOPD tokens per step <= 6 sequences x 5 ($tk)" || bad "TOPD generated $tk tokens in a step"

# --- POPD: H_k = min(T, H0 + dH * floor(k / dk))
run "popd h0 4 dh 3 dk 2, T 12" "$OPD" distill $common --method popd --max-new-tokens 12 --h0 4 --dh 3 --dk 2 --steps 8 --out "$dir/popd"
h=$(col "$dir/popd/log.csv" horizon | tr '\n' ' ')
[ "$h" = "4 4 7 7 10 10 12 12 " ] && ok "POPD horizons 4 4 7 7 10 10 12 12" || bad "POPD horizons: '$h'"
# the old spellings of --max-new-tokens (--horizon, -T) still set T, with one warning line
for old in "--horizon" "-T"; do
    run "popd with the old $old 12" "$OPD" distill $common --method popd $old 12 --h0 4 --dh 3 --dk 2 --steps 4 --out "$dir/popd_old"
    h=$(col "$dir/popd_old/log.csv" horizon | tr '\n' ' ')
    [ "$h" = "4 4 7 7 " ] && ok "$old 12 is --max-new-tokens 12 (horizons $h)" || bad "$old 12: horizons '$h'"
    [ "$(cat "$dir/err")" = "opd distill: $old is deprecated, use --max-new-tokens" ] &&
        ok "$old: one warning line" || { bad "$old: stderr is not the one warning line"; cat "$dir/err"; }
done

# --- every loss runs through the CLI, and evaluation writes its log
for loss in rkl rkl-full fkl jsd rkl-topk rkl-seq; do
    run "loss $loss" "$OPD" distill $common --method topd --rho 0.5 --loss $loss --gamma 0.9 --steps 1 --out "$dir/loss-$loss"
done
run "distill with evaluation" "$OPD" distill $common --method full --steps 2 --eval "$dir/d/test.csv" --eval-every 1 --out "$dir/ev"
[ "$(col "$dir/ev/eval.csv" step | tr '\n' ' ')" = "0 1 2 " ] && ok "eval.csv at steps 0 1 2" || bad "eval.csv steps: $(col "$dir/ev/eval.csv" step | tr '\n' ' ')"
run "opd eval" "$OPD" eval --model "$dir/ev/student.safetensors" --data "$dir/d/test.csv" --samples 2 --out "$dir/eval.csv"
grep -q "greedy pass@1" "$dir/out" && ok "opd eval prints the table" || bad "opd eval output"

# --- bad input
printf 'id,steps,prompt,solution,answer\n0,2,"4a+7b*3>,x,1\n' >"$dir/bad.csv"
expect_fail "malformed CSV" "bad.csv" "$OPD" distill $common --data "$dir/bad.csv" --steps 1 --out "$dir/x"
printf 'id,steps,prompt,solution,answer\n0,2,4a+7b*3>,a4+7=1b1*3=3>3,3\n0,2,4a+7b*3>,a4+7=1b1*3=3>4,4\n' >"$dir/wrong.csv"
expect_fail "wrong answer in the data, with its line" "wrong.csv:3" "$OPD" distill $common --data "$dir/wrong.csv" --steps 1 --out "$dir/x"
run "init a 32-token student" "$OPD" init --vocab 32 --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 "$dir/v32.st"
expect_fail "vocabulary mismatch" "vocabularies differ" "$OPD" distill $common --student "$dir/v32.st" --steps 1 --out "$dir/x"
expect_fail "rho out of range" "out of range" "$OPD" distill $common --method topd --rho 2 --steps 1 --out "$dir/x"
expect_fail "unknown method" "method" "$OPD" distill $common --method sideways --steps 1 --out "$dir/x"
expect_fail "horizon beyond max_seq_len" "max_seq_len" "$OPD" distill $common --max-new-tokens 200 --steps 1 --out "$dir/x"
expect_fail "resume without a checkpoint" "student.safetensors" "$OPD" distill $common --resume --steps 1 --out "$dir/empty"
head -c 1000 "$dir/t.st" >"$dir/trunc.st"
expect_fail "truncated teacher" "trunc.st" "$OPD" distill $common --teacher "$dir/trunc.st" --steps 1 --out "$dir/x"

# --- resume trusts nothing in the checkpoint or the logs (issue 15)
PY=${DEBIAN_PYTHON:-python3}
setmeta() {  # setmeta SRC DST KEY VALUE: rewrite one __metadata__ value
    "$PY" - "$@" <<'PYEOF'
import json, struct, sys
src, dst, key, val = sys.argv[1:5]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
hdr["__metadata__"][key] = val
b = json.dumps(hdr, separators=(",", ":")).encode()
b += b" " * (-len(b) % 8)
open(dst, "wb").write(struct.pack("<Q", len(b)) + b + raw[8 + n:])
PYEOF
}
resume_args="$common --method popd --h0 4 --dh 4 --dk 2 --steps 4"
run "distill stopped after 2, for the resume checks" "$OPD" distill $resume_args --stop-after 2 --out "$dir/R"
cp "$dir/R/student.safetensors" "$dir/R.st"
cp "$dir/R/log.csv" "$dir/R.log"
for v in 9223372036854775807 -5 "" 1e3 " 1"; do
    mkdir -p "$dir/Rbad"; cp "$dir/R/log.csv" "$dir/R/eval.csv" "$dir/Rbad/"
    setmeta "$dir/R.st" "$dir/Rbad/student.safetensors" opd.train.step "$v"
    expect_fail "resume with opd.train.step = '$v'" "metadata 'opd.train.step' = \"$v\" is not an integer in \[0, " \
        timeout 60 "$OPD" distill $resume_args --resume --out "$dir/Rbad"
    cmp -s "$dir/Rbad/log.csv" "$dir/R.log" && ok "  ... and log.csv is untouched" || bad "  ... log.csv was rewritten"
done
setmeta "$dir/R.st" "$dir/Rbad/student.safetensors" opd.train.seconds "nan"
expect_fail "resume with opd.train.seconds = nan" "opd.train.seconds' = \"nan\" is not a finite number" \
    "$OPD" distill $resume_args --resume --out "$dir/Rbad"
# a log of another shape is an error, not silently emptied
cp "$dir/R.st" "$dir/Rbad/student.safetensors"
printf 'step,loss\n0,1.5\n1,1.25\n' >"$dir/Rbad/log.csv"
expect_fail "resume with a log.csv of other columns" "log.csv: 2 columns \"step,loss\" are not the 23 this opd logs" \
    "$OPD" distill $resume_args --resume --out "$dir/Rbad"
[ "$(cat "$dir/Rbad/log.csv")" = "$(printf 'step,loss\n0,1.5\n1,1.25')" ] && ok "  ... and it is kept as it was" || bad "  ... it was rewritten"
# a log behind its checkpoint (a row lost) is an error, not a hole
head -n 2 "$dir/R.log" >"$dir/Rbad/log.csv"
expect_fail "resume with a log behind the checkpoint" "holds steps up to 0 but the checkpoint is at step 1" \
    "$OPD" distill $resume_args --resume --out "$dir/Rbad"
rm "$dir/Rbad/log.csv"
expect_fail "resume without log.csv" "log.csv: missing" "$OPD" distill $resume_args --resume --out "$dir/Rbad"
cp "$dir/R.log" "$dir/Rbad/log.csv"; rm -f "$dir/Rbad/eval.csv"
expect_fail "resume without eval.csv" "eval.csv: missing" "$OPD" distill $resume_args --resume --out "$dir/Rbad"
# rows ahead of the checkpoint (a kill after the log flush, before the
# checkpoint's rename) are dropped and written again: the result is the
# uninterrupted run's
"$OPD" distill $resume_args --out "$dir/Rfull" >/dev/null 2>&1 || bad "uninterrupted run for the ahead-log check"
cp "$dir/R.st" "$dir/Rbad/student.safetensors"
cp "$dir/Rfull/log.csv" "$dir/Rfull/eval.csv" "$dir/Rbad/"
run "resume with a log ahead of the checkpoint" "$OPD" distill $resume_args --resume --out "$dir/Rbad"
[ "$(col "$dir/Rfull/log.csv" loss)" = "$(col "$dir/Rbad/log.csv" loss)" ] &&
    [ "$(col "$dir/Rbad/log.csv" step | tr '\n' ' ')" = "0 1 2 3 " ] && ok "  ... steps 0 1 2 3 once each, the same losses" ||
    bad "  ... log: $(col "$dir/Rbad/log.csv" step | tr '\n' ' ')"

echo "distill: $pass passed, $fail failed"
[ $fail -eq 0 ]
