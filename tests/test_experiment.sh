#!/bin/sh
# The experiment driver and `opd summarize` (issue 18):
#   1. summarize on hand-made runs: the numbers a reader checks by hand
#      (means, a paired difference, a constant cost ratio, the target's
#      crossing placed by interpolation, runs that never reach it);
#   2. bad input to summarize: one line naming the file, non-zero exit;
#   3. the driver's tiny preset end to end (2 seeds): every table and curve;
#   4. a stopped experiment resumes: one run cut short by --stop-after (as a
#      kill after its checkpoint leaves it), its .done removed, the driver
#      run again: that run continues from its checkpoint and ends equal,
#      bit for bit apart from wall-clock columns, to the uninterrupted one;
#      the finished runs are not redone.
set -u
. "$(dirname "$0")/testlib.sh"   # $dir, ok/bad, run, same, normalize
srcdir=${srcdir:-$(dirname "$0")/..}
DRIVER=$srcdir/eval/experiment/experiment.sh

# ---------------------------------------------------------------- 1. summarize
# method a: acc 0.2 -> 0.6 at seconds 0, 10; tokens 0, 100; b: half a's
# cost, acc 0.2 -> 0.4 (seed 1), 0.2 -> 0.6 (seed 2), 0.2 -> 0.9 (seed 3)
mk() {  # mk METHOD SEED ACC_END SEC_END TOK_END PEAK_KB
    d=$dir/runs/$1/seed$2
    mkdir -p "$d"
    printf 'step,train_seconds,tokens_generated,acc,mean_len,truncated_frac,peak_rss_kb\n0,0,0,0.2,5,0,100\n10,%s,%s,%s,5,0,100\n' \
        "$4" "$5" "$3" >"$d/eval.csv"
    printf 'step,peak_rss_kb\n0,%s\n1,%s\n' "$(($6 / 2))" "$6" >"$d/log.csv"
}
for s in 1 2 3; do mk a $s 0.6 10 100 2048; done
mk b 1 0.4 5 50 1024; mk b 2 0.6 5 50 1024; mk b 3 0.9 5 50 1024
run "summarize runs" "$OPD" summarize --runs "$dir/runs" --methods a,b --seeds 3 --target 0.5 \
    --eval-n 100 --out "$dir/sum"
col() {  # col METHOD NAME: the value under NAME in METHOD's row of sum.csv
    awk -F, -v m="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
        $1 == m { print $k }' "$dir/sum.csv"
}
check() {  # check NAME GOT WANT
    if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1: got '$2', want '$3'"; fi
}
check "a final_acc" "$(col a final_acc)" 0.6000
check "b final_acc (mean of 0.4, 0.6, 0.9)" "$(col b final_acc)" 0.6333
check "b - a paired difference (-0.2, 0, 0.3)" "$(col b d_acc)" 0.0333
# a crosses 0.5 at 0.75 of its 10 s; b (seed 1) never does, seeds 2 and 3
# at 0.3/0.4 and 0.3/0.7 of 5 s: mean 2.946 over the 2 that reached it
check "a reached" "$(col a reached)" 3
check "b reached" "$(col b reached)" 2
check "a seconds to target (interpolated)" "$(col a sec_to_target)" 7.500
check "b seconds to target (the 2 that reached it)" "$(col b sec_to_target)" 2.946
check "b time ratio to a" "$(col b time_ratio)" 0.500
check "b token ratio" "$(col b token_ratio)" 0.500
check "b memory ratio" "$(col b peak_ratio)" 0.500
check "b peak MiB" "$(col b peak_mib)" 1.0
check "pass@1 standard error at 0.6, n = 100" "$(col a eval_se)" 0.0490
if grep -q '^| b | 0.633 \[0.4' "$dir/sum.md"; then ok "markdown row with interval"; else bad "markdown row"; cat "$dir/sum.md"; fi
n=$(grep -c '^b,' "$dir/sum_curves.csv")
check "curve points of b" "$n" 2

# ---------------------------------------------------------------- 2. bad input
printf 'step,train_seconds\n0,0\n' >"$dir/runs/b/seed2/eval.csv"
"$OPD" summarize --runs "$dir/runs" --methods a,b --seeds 3 --out "$dir/sum2" >"$dir/out" 2>"$dir/err"
rc=$?
if [ $rc -ne 0 ] && [ "$(wc -l <"$dir/err")" -eq 1 ] && grep -q "runs/b/seed2/eval.csv: no column 'tokens_generated'" "$dir/err"; then
    ok "a run without tokens_generated: one line naming the file, rc $rc"
else bad "missing column (rc $rc)"; cat "$dir/err"; fi
[ ! -e "$dir/sum2.csv" ] && ok "no table written on bad input" || bad "a table was written"
"$OPD" summarize --runs "$dir/runs" --methods a --seeds 4 --out "$dir/sum3" >"$dir/out" 2>"$dir/err"
if [ $? -ne 0 ] && grep -q "seed4/eval.csv" "$dir/err"; then ok "a missing seed is named"; else bad "missing seed"; cat "$dir/err"; fi
"$OPD" summarize --runs "$dir/runs" --methods a --seeds 3 --baseline z --out "$dir/sum3" >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && ok "an unknown baseline is a usage error" || bad "unknown baseline"

# ---------------------------------------------------------------- 3. the driver
E=$dir/exp
if sh "$DRIVER" --preset tiny --out "$E" --opd "$OPD" --jobs 2 >"$dir/drv.out" 2>&1; then
    ok "tiny experiment ran"
else bad "tiny experiment failed"; tail -n 20 "$dir/drv.out"; fi
for f in summary.md chain/sft/summary.csv chain/sft/summary.md chain/sft/summary_curves.csv; do
    [ -s "$E/$f" ] && ok "wrote $f" || bad "no $f"
done
rows=$(awk -F, 'NR > 1 && $2 == 2' "$E/chain/sft/summary.csv" | wc -l)
check "methods with 2 seeds in the table" "$rows" 2
grep -q "over SFT seeds: pass@1 over 2 evaluations" "$E/summary.md" && ok "teacher seed variation reported" ||
    bad "teacher seed variation missing"

# ---------------------------------------------------------------- 4. resume
R=$E/chain/sft/full/seed2
normalize "$R" "$dir/whole"
mkdir "$dir/saved" && mv "$R" "$dir/saved/"
# what a stop after step 4 leaves: the checkpoint, the logs up to it, no .done
T=$E/chain/teacher_sft/seed11.safetensors
"$OPD" distill --teacher "$T" --student "$E/chain/base/seed2.safetensors" --data "$E/chain/data/train.csv" \
    --eval "$E/chain/data/test.csv" --eval-every 4 --eval-n 20 --steps 8 --batch 4 --lr 3e-4 \
    --method full --seed 2 --out "$R" --save-every 4 --stop-after 4 >/dev/null 2>&1
[ -f "$R/student.safetensors" ] && [ ! -f "$R/.done" ] && ok "a run stopped after step 4" || bad "could not stop a run"
before=$(ls -l --time-style=+%s.%N "$E/chain/sft/topd10/seed1/student.safetensors")
sh "$DRIVER" --preset tiny --out "$E" --opd "$OPD" --jobs 2 >"$dir/drv2.out" 2>&1 && ok "the driver ran again" ||
    { bad "second driver run"; tail -n 20 "$dir/drv2.out"; }
grep -q "full/seed2 (resuming)" "$dir/drv2.out" && ok "the stopped run was resumed" || bad "not resumed"
n=$(grep -c '^   ' "$dir/drv2.out")
check "runs redone on the second pass" "$n" 1
after=$(ls -l --time-style=+%s.%N "$E/chain/sft/topd10/seed1/student.safetensors")
[ "$before" = "$after" ] && ok "a finished run was left alone" || bad "a finished run was redone"
normalize "$R" "$dir/resumed"
same "resumed run's checkpoint equals the uninterrupted one's" "$dir/whole.st" "$dir/resumed.st"
same "resumed run's log.csv" "$dir/whole.log" "$dir/resumed.log"
same "resumed run's eval.csv" "$dir/whole.eval" "$dir/resumed.eval"

echo "test_experiment.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
