#!/bin/sh
# Teacher reliability by position and `--method adaptive` (issue 18 items 5
# and 6) on tiny models: positions.csv counts exactly the trained tokens and
# its values are in range, the diagnostics change no trained bit,
# reliability.csv is written at the evaluation steps, and the adaptive
# schedule is monotone, in [H0, T], resumes bit-identically, does not depend
# on the thread count, and with every bucket reliable is POPD bit for bit
# (its probe draws nothing a training rollout uses).
set -u
. "$(dirname "$0")/testlib.sh"
# col FILE NAME: the column NAME of a CSV, one value a line
col() { awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } { print $c }' "$1"; }
tensors() {  # tensors NAME A B: every tensor bit-identical
    if "$OPD" golden check --exact --quiet "$2" "$3" >"$dir/cmp" 2>&1; then ok "$1"; else bad "$1"; tail -5 "$dir/cmp"; fi
}
check() {  # check NAME: the last command's status
    if [ $? -eq 0 ]; then ok "$1"; else bad "$1"; fi
}

run "data" "$OPD" data --out "$dir/d" --min-steps 2 --max-steps 4 --train 64 --valid 8 --test 8 --seed 3
run "init teacher" "$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --max-seq 48 --seed 1 "$dir/t.st"
run "init student" "$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --seed 2 "$dir/s.st"
common="--teacher $dir/t.st --student $dir/s.st --data $dir/d/train.csv --batch 3 --samples 2 --lr 1e-2 --seed 5"
T=20

# --- positions.csv: one row per (step, bucket of 8 of T), counts = log.csv's tokens
run "popd with diagnostics" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --max-new-tokens $T \
    --steps 4 --eval "$dir/d/valid.csv" --eval-every 2 --out "$dir/P"
[ "$(head -n1 "$dir/P/positions.csv")" = "step,bucket,pos_lo,pos_hi,count,rkl,overlap" ]
check "positions.csv header"
[ "$(awk 'END { print NR - 1 }' "$dir/P/positions.csv")" = 12 ]
check "positions.csv: 4 steps x ceil(20 / 8) = 3 buckets"
awk -F, 'NR > 1 && ($3 != $2 * 8 || $4 != ($2 == 2 ? 19 : $2 * 8 + 7)) { e = 1 } END { exit e }' "$dir/P/positions.csv"
check "positions.csv: buckets 0-7, 8-15, 16-19"
awk -F, 'NR > 1 { c[$1] += $5 } END { for (s in c) print s "," c[s] }' "$dir/P/positions.csv" | sort -n >"$dir/pc"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "tokens") t = i; next } { print $1 "," $t }' \
    "$dir/P/log.csv" >"$dir/lc"
same "positions.csv: each step's counts sum to its log.csv tokens (the masked trained tokens)" "$dir/pc" "$dir/lc"
awk -F, 'NR > 1 && $5 > 0 && !($6 >= 0 && $7 >= 0 && $7 <= 1) { e = 1 }
         NR > 1 && $5 == 0 && ($6 != "nan" || $7 != "nan") { e = 1 } END { exit e }' "$dir/P/positions.csv"
check "positions.csv: rkl >= 0, overlap in [0, 1]; nan where nothing was trained"
awk -F, 'NR > 1 && $1 < 2 && $2 > 0 && $5 > 0 { e = 1 } END { exit e }' "$dir/P/positions.csv"
check "positions.csv: at H_k = 4 nothing beyond bucket 0 is trained"

# --- the diagnostics change no trained bit
run "popd without diagnostics" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --max-new-tokens $T \
    --steps 4 --eval "$dir/d/valid.csv" --eval-every 2 --no-positions --out "$dir/Pn"
[ ! -f "$dir/Pn/positions.csv" ]
check "--no-positions writes no positions.csv"
tensors "diagnostics on and off: the same student bits" "$dir/P/student.safetensors" "$dir/Pn/student.safetensors"
run "micro-batches of 2 with diagnostics" "$OPD" distill $common --method full --max-new-tokens $T --steps 2 \
    --micro-batch 2 --out "$dir/M"
awk -F, 'NR > 1 { c[$1] += $5 } END { for (s in c) print s "," c[s] }' "$dir/M/positions.csv" | sort -n >"$dir/mc"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "tokens") t = i; next } { print $1 "," $t }' \
    "$dir/M/log.csv" >"$dir/ml"
same "micro-batches: counts sum to the step's tokens" "$dir/mc" "$dir/ml"

# --- reliability.csv: at step 0 and the eval schedule (2, 4), teacher_acc in [0, 1]
[ "$(head -n1 "$dir/P/reliability.csv")" = "step,bucket,pos,n,teacher_acc,student_acc" ]
check "reliability.csv header"
[ "$(col "$dir/P/reliability.csv" step | uniq | tr '\n' ' ')" = "0 2 4 " ]
check "reliability.csv at steps 0, 2, 4 (the eval schedule)"
[ "$(col "$dir/P/reliability.csv" pos | head -n3 | tr '\n' ' ')" = "0 8 16 " ]
check "reliability.csv: one row per bucket start"
awk -F, 'NR > 1 && !($5 >= 0 && $5 <= 1 && $6 >= 0 && $6 <= 1 && $4 == 8) { e = 1 } END { exit e }' "$dir/P/reliability.csv"
check "reliability.csv: accuracies in [0, 1] on the 8 problems there are"
run "--reliability-every 3 --reliability-n 4" "$OPD" distill $common --method full --max-new-tokens $T --steps 4 \
    --eval "$dir/d/valid.csv" --eval-every 2 --reliability-every 3 --reliability-n 4 --out "$dir/R"
[ "$(col "$dir/R/reliability.csv" step | uniq | tr '\n' ' ')" = "0 3 4 " ] && [ "$(col "$dir/R/reliability.csv" n | sort -u)" = 4 ]
check "--reliability-every 3: steps 0, 3 and the last; n = 4"
run "--reliability-every 0" "$OPD" distill $common --method full --max-new-tokens $T --steps 2 \
    --eval "$dir/d/valid.csv" --reliability-every 0 --out "$dir/R0"
[ ! -f "$dir/R0/reliability.csv" ]
check "--reliability-every 0 writes no reliability.csv"

# --- --method adaptive
ad="--method adaptive --h0 4 --dh 4 --dk 2 --max-new-tokens $T --steps 8 --probe-n 16 --adaptive-threshold 0.12"
ad="$ad --eval $dir/d/valid.csv --eval-every 3"
run "adaptive, 1 thread" env OMP_NUM_THREADS=1 "$OPD" distill $common $ad --out "$dir/A1"
col "$dir/A1/log.csv" horizon | awk -v T=$T 'NR > 1 && $1 < prev { e = 1 } $1 < 4 || $1 > T { e = 1 } { prev = $1 } END { exit e }'
check "adaptive: the horizon column is non-decreasing, in [H0, T]"
run "adaptive, 2 threads" env OMP_NUM_THREADS=2 "$OPD" distill $common $ad --out "$dir/A2"
tensors "adaptive: 1 vs 2 threads bit-identical" "$dir/A1/student.safetensors" "$dir/A2/student.safetensors"
run "adaptive, stopped after 4" "$OPD" distill $common $ad --stop-after 4 --out "$dir/B"
run "adaptive, resumed" "$OPD" distill $common $ad --resume --out "$dir/B"
normalize "$dir/A1" "$dir/a"
normalize "$dir/B" "$dir/b"
same "adaptive: stop + resume equals the uninterrupted run (checkpoint)" "$dir/a.st" "$dir/b.st"
same "adaptive: stop + resume, the same log.csv" "$dir/a.log" "$dir/b.log"
same "adaptive: stop + resume, the same positions.csv" "$dir/A1/positions.csv" "$dir/B/positions.csv"
same "adaptive: stop + resume, the same reliability.csv" "$dir/A1/reliability.csv" "$dir/B/reliability.csv"
grep -q '"opd.train.adaptive_horizon"' "$dir/B/student.safetensors"
check "adaptive: the checkpoint holds the current horizon"
logged=$(col "$dir/A1/log.csv" tokens | awk '{ s += $1 } END { print s }')
total=$(awk -F, 'END { print $3 }' "$dir/A1/eval.csv")
[ "$total" -gt "$logged" ]
check "adaptive: the probes' tokens count in tokens_generated ($total > $logged trained)"
# every bucket reliable (threshold 0, enough probe tokens per bucket): the
# rule is POPD's, and the probes change none of the training's draws
run "adaptive, threshold 0" "$OPD" distill $common --method adaptive --h0 4 --dh 4 --dk 2 --max-new-tokens $T \
    --steps 8 --probe-n 32 --adaptive-threshold 0 --out "$dir/Z"
run "popd, the same clock" "$OPD" distill $common --method popd --h0 4 --dh 4 --dk 2 --max-new-tokens $T \
    --steps 8 --out "$dir/Zp"
[ "$(col "$dir/Z/log.csv" horizon | tr '\n' ' ')" = "$(col "$dir/Zp/log.csv" horizon | tr '\n' ' ')" ]
check "adaptive with every bucket reliable: POPD's horizons"
tensors "adaptive with every bucket reliable: POPD's bits (the probe draws nothing of the training's)" \
    "$dir/Z/student.safetensors" "$dir/Zp/student.safetensors"
"$OPD" distill --help | grep -q "adaptive" && "$OPD" distill --help | grep -q -- "--reliability-every"
check "--help names --method adaptive and --reliability-every"
"$OPD" distill $common --bucket-width 9 --out "$dir/X" >/dev/null 2>&1
[ $? -eq 2 ]
check "--bucket-width 9 is refused (at most 8)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
