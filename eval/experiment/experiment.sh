#!/bin/sh
# experiment.sh — the paper's comparison on a laptop: from one teacher and one
# warm-started student, run full OPD, POPD and TOPD (rho 0.25 and 0.10) for the
# same number of steps, evaluate on a fixed schedule, and write the table
# (final accuracy, wall-clock, time to a target accuracy, tokens generated,
# peak memory) and a plot of accuracy against wall-clock.
#
#   sh eval/experiment/experiment.sh [--preset demo|paper] [--out DIR] [--opd PATH]
#
# Each method runs in its own `opd distill` process, so its peak memory is its
# own. Wall-clock is training time (rollout + teacher + student + optimizer),
# evaluation excluded.
set -eu

preset=demo
out=""
OPD=${OPD:-./opd}
while [ $# -gt 0 ]; do
    case "$1" in
    --preset) preset=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --opd) OPD=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "experiment.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out=results/$preset

case "$preset" in
demo)   # about 5 minutes on 2 cores
    DATA="--min-steps 4 --max-steps 10 --train 4000 --valid 100 --test 200"
    TEACHER="--d-model 128 --layers 4 --heads 4 --kv-heads 2 --ffn 384 --max-seq 128"
    TEACHER_SFT="--steps 700 --batch 32 --lr 3e-3 --warmup 50"
    STUDENT="--d-model 64 --layers 2 --heads 4 --kv-heads 2 --ffn 192 --max-seq 128"
    STUDENT_SFT="--steps 3000 --batch 32 --lr 3e-3 --warmup 20 --eval-every 10 --eval-n 100 --stop-at 0.3"
    DISTILL="--steps 200 --batch 32 --lr 3e-4 --warmup 20"
    EVAL="--eval-every 25 --eval-n 200"
    POPD="--dk 25"
    ;;
paper)  # about 20 minutes on 2 cores: longer problems (T = 123), longer runs
    DATA="--min-steps 8 --max-steps 20 --train 8000 --valid 200 --test 300"
    TEACHER="--d-model 128 --layers 4 --heads 4 --kv-heads 2 --ffn 384 --max-seq 192"
    TEACHER_SFT="--steps 1200 --batch 32 --lr 3e-3 --warmup 50"
    STUDENT="--d-model 64 --layers 2 --heads 4 --kv-heads 2 --ffn 192 --max-seq 192"
    STUDENT_SFT="--steps 3000 --batch 32 --lr 3e-3 --warmup 20 --eval-every 50 --eval-n 200 --stop-at 0.3"
    DISTILL="--steps 400 --batch 32 --lr 3e-4 --warmup 20"
    EVAL="--eval-every 50 --eval-n 300"
    POPD="--dk 50"
    ;;
*) echo "experiment.sh: unknown preset '$preset' (demo, paper)" >&2; exit 2 ;;
esac

mkdir -p "$out"
echo "== [$preset] data"
[ -f "$out/data/test.csv" ] || $OPD data --out "$out/data" $DATA
echo "== [$preset] teacher (SFT)"
[ -f "$out/teacher.safetensors" ] || $OPD sft --data "$out/data/train.csv" --out "$out/teacher.safetensors" \
    $TEACHER $TEACHER_SFT --seed 11 --log "$out/teacher_sft.csv"
# The student is trained until its validation pass@1 first reaches 0.3: past
# the loss plateau every model here sits on for hundreds of steps (about 0.25
# nats/token, pass@1 near 0.1) before it finds the algorithm. A student stopped
# on that plateau does not move in a few hundred steps of OPD or of more SFT
# (README, Results), so it cannot show anything about the horizon.
echo "== [$preset] student warm start (SFT until validation pass@1 >= 0.3)"
[ -f "$out/student0.safetensors" ] || $OPD sft --data "$out/data/train.csv" --out "$out/student0.safetensors" \
    $STUDENT $STUDENT_SFT --eval "$out/data/valid.csv" --seed 12 --log "$out/student_sft.csv"

echo "== [$preset] teacher and student on the test split"
$OPD eval --model "$out/teacher.safetensors" --data "$out/data/test.csv" --out "$out/teacher_eval.csv" | tee "$out/teacher_eval.txt"
$OPD eval --model "$out/student0.safetensors" --data "$out/data/test.csv" --out "$out/student0_eval.csv" | tee "$out/student0_eval.txt"

for m in full popd topd25 topd10; do
    case $m in
    full) args="--method full" ;;
    popd) args="--method popd $POPD" ;;
    topd25) args="--method topd --rho 0.25" ;;
    topd10) args="--method topd --rho 0.10" ;;
    esac
    echo "== [$preset] distill: $m"
    $OPD distill --teacher "$out/teacher.safetensors" --student "$out/student0.safetensors" \
        --data "$out/data/train.csv" --eval "$out/data/test.csv" $EVAL $DISTILL $args \
        --seed 7 --out "$out/runs/$m"
done

# ------------------------------------------------------------------ the table
t_acc=$(awk -F, '$1=="pass@1" && $2=="all" {print $3}' "$out/teacher_eval.csv")
s_acc=$(awk -F, '$1=="pass@1" && $2=="all" {print $3}' "$out/student0_eval.csv")
# target: three quarters of the way from the warm-started student to the teacher
target=$(awk -v t="$t_acc" -v s="$s_acc" 'BEGIN {printf "%.4f", s + 0.75 * (t - s)}')
{
    echo "method,final_acc,train_seconds,seconds_to_target,tokens_generated,peak_rss_mib"
    for m in full popd topd25 topd10; do
        awk -F, -v m="$m" -v target="$target" -v logf="$out/runs/$m/log.csv" '
            NR == 1 { next }
            { acc = $4; sec = $2; tok = $3
              if (tt == "" && acc + 0 >= target + 0) tt = sec }
            END {
                peak = 0
                while ((getline line < logf) > 0) { n = split(line, f, ","); if (f[n] + 0 > peak) peak = f[n] + 0 }
                printf "%s,%.4f,%.1f,%s,%d,%.1f\n", m, acc, sec, (tt == "" ? "not reached" : sprintf("%.1f", tt)), tok, peak / 1024
            }' "$out/runs/$m/eval.csv"
    done
} >"$out/summary.csv"

{
    echo "preset $preset: teacher pass@1 $t_acc, warm-started student $s_acc, target $target"
    echo
    echo "| method | final pass@1 | train s | s to target | tokens generated | peak MiB |"
    echo "|---|---|---|---|---|---|"
    tail -n +2 "$out/summary.csv" | awk -F, '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}'
} | tee "$out/summary.md"

if command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<GP && echo "wrote $out/accuracy_vs_time.png"
set terminal pngcairo size 900,560 noenhanced
set output "$out/accuracy_vs_time.png"
set yrange [0:1.05]
set datafile separator ","
set key bottom right
set grid
set xlabel "training wall-clock (s)"
set ylabel "test pass@1 (greedy, full horizon)"
set title "OPD vs POPD vs TOPD ($preset preset)"
plot "$out/runs/full/eval.csv" every ::1 using 2:4 with linespoints title "full OPD", \
     "$out/runs/popd/eval.csv" every ::1 using 2:4 with linespoints title "POPD", \
     "$out/runs/topd25/eval.csv" every ::1 using 2:4 with linespoints title "TOPD rho=0.25", \
     "$out/runs/topd10/eval.csv" every ::1 using 2:4 with linespoints title "TOPD rho=0.10", \
     $t_acc with lines dashtype 2 lw 2 title "teacher", \
     $s_acc with lines dashtype 3 title "student before distillation"
GP
else
    echo "gnuplot not found: no plot (apt-get install gnuplot-nox)"
fi
