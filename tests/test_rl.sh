#!/bin/sh
# opd rl end to end on a tiny SFT-warmed student (one that solves some
# problems, so groups carry signal): the three files with their headers
# (eval.csv with distill's columns), the same seed gives the same bits, on 1
# and 2 threads, --stop-after + --resume equals an uninterrupted run, and a
# bad option fails with one line.
# About 10 s on one core.
set -u
. "$(dirname "$0")/testlib.sh"   # $dir, ok/bad, run, normalize
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

run "data" "$OPD" data --out "$dir/d" --min-steps 1 --max-steps 3 --train 500 --valid 50 --test 50 --seed 3
run "sft warm start" "$OPD" sft --data "$dir/d/train.csv" --out "$dir/s.st" --d-model 32 --layers 1 --heads 2 \
    --kv-heads 1 --ffn 64 --max-seq 40 --steps 300 --batch 16 --lr 3e-3 --warmup 10 --seed 1
args="--student $dir/s.st --data $dir/d/train.csv --batch 4 --group 4 --steps 6 --lr 1e-3 --seed 5
      --eval $dir/d/test.csv --eval-every 3 --eval-n 20"
# same_run NAME A B: checkpoints (less the seconds metadata), log.csv and
# eval.csv (less the wall-clock and RSS columns) cmp-identical
same_run() {
    normalize "$2" "$dir/x" && normalize "$3" "$dir/y" &&
    if cmp -s "$dir/x.st" "$dir/y.st" && cmp -s "$dir/x.log" "$dir/y.log" && cmp -s "$dir/x.eval" "$dir/y.eval"; then
        ok "$1"
    else
        bad "$1"
    fi
}

# --- (a) the files and their headers
run "rl 6 steps" "$OPD" rl $args --out "$dir/A"
[ -f "$dir/A/student.safetensors" ] && "$OPD" info "$dir/A/student.safetensors" >/dev/null &&
    ok "student.safetensors loads" || bad "student.safetensors missing or unreadable"
[ "$(head -n1 "$dir/A/log.csv")" = "step,mean_reward,groups_with_signal,tokens,truncated,trained_len,loss,grad_norm,lr,sec_rollout,sec_reward,sec_student,sec_optim,train_seconds,peak_rss_kb" ] &&
    ok "log.csv header" || bad "log.csv header: $(head -n1 "$dir/A/log.csv")"
[ "$(wc -l <"$dir/A/log.csv")" -eq 7 ] && ok "log.csv: one row per step" || bad "log.csv has $(wc -l <"$dir/A/log.csv") lines"
[ "$(head -n1 "$dir/A/eval.csv")" = "step,train_seconds,tokens_generated,acc,mean_len,truncated_frac,peak_rss_kb" ] &&
    ok "eval.csv has distill's columns" || bad "eval.csv header: $(head -n1 "$dir/A/eval.csv")"
[ "$(cut -d, -f1 "$dir/A/eval.csv" | tr '\n' ' ')" = "step 0 3 6 " ] && ok "eval.csv rows at steps 0 3 6" ||
    bad "eval.csv steps: $(cut -d, -f1 "$dir/A/eval.csv" | tr '\n' ' ')"
sig=$(awk -F, 'NR > 1 && $3 > 0 { n++ } END { print n + 0 }' "$dir/A/log.csv")
[ "$sig" -gt 0 ] && ok "some steps have groups with signal ($sig of 6)" || bad "no step had a group with signal"
# tokens_generated is the running sum of log.csv's tokens
tk=$(awk -F, 'NR > 1 { s += $4 } END { print s }' "$dir/A/log.csv")
[ "$(tail -n1 "$dir/A/eval.csv" | cut -d, -f3)" = "$tk" ] && ok "tokens_generated = sum of tokens ($tk)" ||
    bad "tokens_generated $(tail -n1 "$dir/A/eval.csv" | cut -d, -f3) != $tk"
"$OPD" eval --model "$dir/A/student.safetensors" --data "$dir/d/test.csv" --n 5 >/dev/null 2>&1 &&
    ok "opd eval loads the policy" || bad "opd eval cannot load the policy"

# --- (b) the same seed, the same bits; 1 and 2 threads alike
run "rl again, same seed" "$OPD" rl $args --out "$dir/A2"
same_run "two runs with the same seed are identical" "$dir/A" "$dir/A2"
run "rl on 2 threads" env OMP_NUM_THREADS=2 "$OPD" rl $args --out "$dir/T2"
same_run "1 vs 2 threads identical" "$dir/A" "$dir/T2"

# --- (c) --stop-after 4, --resume == uninterrupted (checkpoint and logs)
run "rl stopped after 4" "$OPD" rl $args --stop-after 4 --out "$dir/B"
grep -q "stopped after step 4" "$dir/out" || bad "--stop-after says where it stopped"
run "rl resumed" "$OPD" rl $args --resume --out "$dir/B"
grep -q "resuming .* at step 4" "$dir/out" || bad "--resume says where it resumes"
same_run "stopped + resumed run == uninterrupted run (checkpoint, log.csv, eval.csv)" "$dir/A" "$dir/B"
# a kill after the logs were flushed but before the checkpoint was renamed:
# logs ahead of the checkpoint (all 6 steps, checkpoint at 4); --resume
# drops the rows ahead and writes them again
run "rl stopped after 4 (again)" "$OPD" rl $args --stop-after 4 --out "$dir/C0"
mkdir -p "$dir/C" && cp "$dir/A/log.csv" "$dir/A/eval.csv" "$dir/C/" && cp "$dir/C0/student.safetensors" "$dir/C/"
run "rl resumed with logs ahead of the checkpoint" "$OPD" rl $args --resume --out "$dir/C"
same_run "logs ahead of the checkpoint: resumed == uninterrupted" "$dir/A" "$dir/C"

# --- (d) bad input: one line naming the option, non-zero exit
expect_one_line() {  # expect_one_line NAME PATTERN CMD...
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name: rc $rc"; return; fi
    if [ "$(wc -l <"$dir/err")" -eq 1 ] && grep -q -- "$pat" "$dir/err"; then ok "$name ($(cat "$dir/err"))"
    else bad "$name: stderr is not one line with '$pat'"; cat "$dir/err"; fi
}
expect_one_line "--group 0" "opd rl: --group: 0 is out of range" "$OPD" rl $args --group 0 --out "$dir/E"
expect_one_line "--temperature x" "opd rl: --temperature: 'x' is not a finite number" "$OPD" rl $args --temperature x --out "$dir/E"
expect_one_line "a missing --data file" "nope.csv" "$OPD" rl $args --data "$dir/nope.csv" --out "$dir/E"

echo "rl: $pass passed, $fail failed"
[ $fail -eq 0 ]
