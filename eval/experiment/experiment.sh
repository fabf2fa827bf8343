#!/bin/sh
# experiment.sh — the paper's comparison over seeds, with intervals.
#
#   sh eval/experiment/experiment.sh [--preset demo|paper] [--seeds N] [--jobs J]
#                                    [--regimes chain,plan] [--out DIR] [--opd PATH]
#
# For each regime (the task the teacher's signal lives in) and each teacher:
#   - the data, the teacher(s) and the student warm starts (one per seed);
#   - every method for every seed: DIR/REGIME/TEACHER/METHOD/seedS/, the --out
#     of one `opd distill` (or `opd rl`, the RLVR baseline) process, so each
#     run's peak memory is its own;
#   - `opd summarize`: mean and 95% bootstrap interval over seeds, paired
#     differences against full OPD, time to target; then the plots.
# Regimes: "chain", the control (the teacher's signal is spread along the
# horizon); "shift" (data/opd_data.h), where what the teacher knows is one
# early token: the chain's own warm starts copy the start digit, the rule is
# start + 1 (its teacher: the chain's SFT teacher adapted by 200 SFT steps);
# and "plan" (--regimes chain,shift,plan; not in the presets), a map lookup
# at the start that no warm start has yet been taught by OPD. Teachers: "rl", made the paper's
# way (the student's own base improved by GRPO on the verifiable reward,
# `opd rl`), and "sft", a larger model trained by SFT.
# Per seed S: a new student warm start (SFT seed 100 + S) and new rollout
# randomness (--seed S); the teacher is shared, its own seed variation is
# measured separately (in summary.md).
#
# Resumable: a finished run leaves .done and is skipped; a run stopped
# part-way continues from its last checkpoint (--save-every = the eval
# period, then --resume: bit-identical to an uninterrupted run). So a
# stopped `make experiment` picks up where it stopped when run again.
#
# J runs go at a time (default: the number of cores), each on one thread:
# every run's wall-clock is one core's, whatever J is. Wall-clock is training
# time (rollout + teacher + student + optimizer), evaluation excluded.
set -eu

preset=demo
out=""
seeds=""
jobs=""
job=""
regimes=""
OPD=${OPD:-./opd}
self=$0
while [ $# -gt 0 ]; do
    case "$1" in
    --preset) preset=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --opd) OPD=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --regimes) regimes=$(echo "$2" | tr ',' ' '); shift 2 ;;
    --job) shift; job="$*"; [ -n "$job" ] || { echo "experiment.sh: --job needs a job" >&2; exit 2; }; break ;;   # internal: one run
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "experiment.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || out=results/$preset
# cores (getconf: nproc would answer OMP_NUM_THREADS)
ncores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
[ -n "$jobs" ] || jobs=$ncores
# each run's threads: the cores shared out among the J runs at a time (the
# bits do not depend on it, SPEC section 9)
if [ -z "${OMP_NUM_THREADS:-}" ]; then
    OMP_NUM_THREADS=$(( ncores / jobs ))
    [ "$OMP_NUM_THREADS" -ge 1 ] || OMP_NUM_THREADS=1
fi
export OMP_NUM_THREADS

# ------------------------------------------------------------------ presets
# Shared by both presets: the demo scale (4 to 10 steps, T = 63), so that a
# run is tens of seconds on one core.
STUDENT="--d-model 64 --layers 2 --heads 4 --kv-heads 2 --ffn 192 --max-seq 128"
TEACHER="--d-model 128 --layers 4 --heads 4 --kv-heads 2 --ffn 384 --max-seq 128"
STUDENT_SFT="--steps 3000 --batch 32 --lr 3e-3 --warmup 20 --eval-every 10 --eval-n 100 --stop-at 0.3"
TEACHER_SFT="--steps 700 --batch 32 --lr 3e-3 --warmup 50"
# shift's teacher: the chain's SFT teacher adapted to the shifted start
TEACHER_ADAPT="--steps 200 --batch 32 --lr 1e-3 --warmup 20"
DISTILL="--steps 200 --batch 32 --lr 3e-4 --warmup 20"
EVAL_EVERY=25
EVAL_N=200
POPD="--dk 25"
# adaptive: H grows on POPD's clock across buckets where the student's greedy
# token agrees with the teacher's on >= 95% of a probe's positions (top-1
# overlap; the top-5 overlap is flat on this 64-token vocabulary, README)
ADAPTIVE="--dk 25 --overlap-k 1 --adaptive-threshold 0.95"
# the teacher continuing the student's prefix (reliability.csv): 3 times a run
RELIABILITY="--reliability-every 100"
RL="--steps 200 --batch 8 --group 8 --lr 1e-4 --warmup 10"
RL_TEACHER="--steps 400 --batch 8 --group 8 --lr 1e-4 --warmup 10"
case "$preset" in
demo)   # a few minutes on 2 cores: one regime, the SFT teacher, one seed
    REGIMES="chain"
    TEACHERS="sft"
    METHODS_FIRST="full popd topd25 topd10"
    METHODS_SECOND=""
    TEACHER_SEEDS="11"
    [ -n "$seeds" ] || seeds=1
    ;;
paper)  # make experiment: chain (both teachers) and shift, 5 seeds, the horizon sweep
    # the plan regime is not in by default: no warm start of it has been
    # found that OPD teaches within 200 steps (README); --regimes chain,shift,plan
    REGIMES="chain shift"
    TEACHERS="rl sft"
    # with the first teacher: every method and the sweep rho = 0.05 .. 1 (full)
    METHODS_FIRST="full popd adaptive topd05 topd10 topd25 topd50 rlvr"
    # with the second: the paper's methods and adaptive
    METHODS_SECOND="full popd adaptive topd10 topd25"
    # the shift regime (--regimes chain,shift), its one teacher
    METHODS_SHIFT="full popd adaptive topd10 topd25 topd50 rlvr"
    TEACHER_SEEDS="11 21 31"
    [ -n "$seeds" ] || seeds=5
    ;;
tiny)   # the tests' (tests/test_experiment.sh): seconds, not a result
    REGIMES="chain"
    TEACHERS="sft"
    METHODS_FIRST="full topd10"
    METHODS_SECOND=""
    TEACHER_SEEDS="11 21"
    STUDENT="--d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48"
    TEACHER="--d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48"
    STUDENT_SFT="--steps 20 --batch 8 --lr 3e-3"
    TEACHER_SFT="--steps 30 --batch 8 --lr 3e-3"
    DISTILL="--steps 8 --batch 4 --lr 3e-4"
    EVAL_EVERY=4
    EVAL_N=20
    [ -n "$seeds" ] || seeds=2
    ;;
*) echo "experiment.sh: unknown preset '$preset' (demo, paper, tiny)" >&2; exit 2 ;;
esac
[ -n "$regimes" ] && REGIMES=$regimes
case "$seeds" in ''|*[!0-9]*|0) echo "experiment.sh: --seeds must be a positive integer" >&2; exit 2 ;; esac
SEEDS=$(seq 1 "$seeds")

data_args() {   # the task of each regime
    [ "$preset" = tiny ] && { echo "--min-steps 1 --max-steps 3 --train 200 --valid 20 --test $EVAL_N"; return; }
    case "$1" in
    chain) echo "--min-steps 4 --max-steps 10 --train 4000 --valid 100 --test $EVAL_N" ;;
    # the plan family's calibrated form (data/opd_data.h): a teacher learns
    # its decision in 800 SFT steps; see README for why it is not run by default
    # a chain prompt marked '=>' whose start is s + 1: the chain's own warm
    # starts have the wrong habit at one early token (data/opd_data.h)
    shift) echo "--family shift --min-steps 4 --max-steps 10 --train 4000 --valid 100 --test $EVAL_N" ;;
    plan) echo "--family plan --hops 1 --chase --sorted --min-steps 3 --max-steps 3 --train 50000 --valid 200 --test $EVAL_N" ;;
    esac
}
method_args() {
    case "$1" in
    full) echo "--method full" ;;
    popd) echo "--method popd $POPD" ;;
    adaptive) echo "--method adaptive $ADAPTIVE" ;;
    topd05) echo "--method topd --rho 0.05" ;;
    topd10) echo "--method topd --rho 0.10" ;;
    topd25) echo "--method topd --rho 0.25" ;;
    topd50) echo "--method topd --rho 0.50" ;;
    esac
}
# shift distills with the forward KL: the sampled reverse KL cannot move a
# confidently wrong token the student never samples (README; measured: full
# OPD 0.09 -> 0.005 with rkl, 0.09 -> 0.99 with fkl, seed 3)
loss_of() { [ "$1" = shift ] && echo "--loss fkl"; true; }
# shift's warm starts are the chain's (its point: a chain-trained student has
# the wrong habit at one early token) and its teacher is the SFT one (a GRPO
# teacher from that base would have to find the fix by chance first)
base_regime() { [ "$1" = shift ] && echo chain || echo "$1"; }
base_ckpt() { echo "$out/$(base_regime "$1")/base/seed$2.safetensors"; }
teachers_of() {
    if [ "$1" = shift ]; then case " $TEACHERS " in *" sft "*) echo sft ;; esac; else echo "$TEACHERS"; fi
}
# the first teacher of a regime runs every method, the second the short list
methods_of() {   # methods_of REGIME TEACHER
    [ "$1" = shift ] && { echo "$METHODS_SHIFT"; return; }
    first=$(teachers_of "$1"); first=${first%% *}
    [ "$2" = "$first" ] && echo "$METHODS_FIRST" || echo "$METHODS_SECOND"
}

# run DIR CMD...: one resumable run. Skipped when DIR/.done exists; resumed
# (--resume) when DIR has a checkpoint from a stopped run.
run() {
    dir=$1; shift
    [ -f "$dir/.done" ] && return 0
    mkdir -p "$dir"
    resume=""
    [ -f "$dir/student.safetensors" ] && resume="--resume"
    echo "   $dir${resume:+ (resuming)}"
    t0=$(date +%s)
    if "$@" --save-every $EVAL_EVERY $resume >"$dir/run.txt" 2>&1; then
        echo "$dir,$(( $(date +%s) - t0 ))" >>"$out/jobs.csv"
        touch "$dir/.done"
    else
        echo "experiment.sh: $dir failed (rc $?): see $dir/run.txt" >&2
        tail -n 3 "$dir/run.txt" >&2
        return 1
    fi
}

# once: SFT and RL outputs are written atomically, so a stopped one restarts
once() {   # once FILE CMD...: run CMD unless FILE exists
    f=$1; shift
    [ -f "$f" ] && return 0
    mkdir -p "$(dirname "$f")"
    echo "   $f"
    t0=$(date +%s)
    "$@" >"$f.txt" 2>&1 && echo "$f,$(( $(date +%s) - t0 ))" >>"$out/jobs.csv" || {
        echo "experiment.sh: making $f failed: see $f.txt" >&2; tail -n 3 "$f.txt" >&2; return 1; }
}

# ------------------------------------------------------------------ one job
if [ -n "$job" ]; then
    set -- $job
    R=$out/$1
    case "$2" in
    data) once "$R/data/test.csv" $OPD data --out "$R/data" $(data_args "$1") ;;
    base_eval)   # a regime that borrows another's warm starts scores them on its own test split
        once "$R/base/seed$3_eval.csv" $OPD eval --model "$(base_ckpt "$1" "$3")" --data "$R/data/test.csv" \
            --out "$R/base/seed$3_eval.csv" ;;
    base)   # the student warm start of seed $3 (seed 0: the RL teacher's base)
        once "$R/base/seed$3.safetensors" $OPD sft --data "$R/data/train.csv" --out "$R/base/seed$3.safetensors" \
            $STUDENT $STUDENT_SFT --eval "$R/data/valid.csv" --seed $((100 + $3)) --log "$R/base/seed$3_sft.csv"
        once "$R/base/seed$3_eval.csv" $OPD eval --model "$R/base/seed$3.safetensors" --data "$R/data/test.csv" \
            --out "$R/base/seed$3_eval.csv" ;;
    teacher_sft)
        if [ "$(base_regime "$1")" != "$1" ]; then
            # the borrowing regime's teacher: the other regime's SFT teacher of
            # the same seed, adapted by SFT on this regime's problems
            once "$R/teacher_sft/seed$3.safetensors" $OPD sft --init "$out/$(base_regime "$1")/teacher_sft/seed$3.safetensors" \
                --data "$R/data/train.csv" --out "$R/teacher_sft/seed$3.safetensors" $TEACHER_ADAPT --seed $3 \
                --log "$R/teacher_sft/seed$3_sft.csv"
        else
            once "$R/teacher_sft/seed$3.safetensors" $OPD sft --data "$R/data/train.csv" \
                --out "$R/teacher_sft/seed$3.safetensors" $TEACHER $TEACHER_SFT --seed $3 --log "$R/teacher_sft/seed$3_sft.csv"
        fi
        once "$R/teacher_sft/seed$3_eval.csv" $OPD eval --model "$R/teacher_sft/seed$3.safetensors" \
            --data "$R/data/test.csv" --out "$R/teacher_sft/seed$3_eval.csv" ;;
    teacher_rl)   # GRPO from the base of seed 0, RL seed $3
        run "$R/teacher_rl/seed$3" $OPD rl --student "$R/base/seed0.safetensors" --data "$R/data/train.csv" \
            --eval "$R/data/test.csv" --eval-every 100 --eval-n $EVAL_N $RL_TEACHER --seed $3 --out "$R/teacher_rl/seed$3"
        once "$R/teacher_rl/seed$3_eval.csv" $OPD eval --model "$R/teacher_rl/seed$3/student.safetensors" \
            --data "$R/data/test.csv" --out "$R/teacher_rl/seed$3_eval.csv" ;;
    *)  # TEACHER METHOD SEED
        teacher=$2 m=$3 s=$4
        T=$R/teacher_$teacher/seed${TEACHER_SEEDS%% *}.safetensors
        [ "$teacher" = rl ] && T=$R/teacher_rl/seed1/student.safetensors
        if [ "$m" = rlvr ]; then
            run "$R/$teacher/$m/seed$s" $OPD rl --student "$(base_ckpt "$1" "$s")" --data "$R/data/train.csv" \
                --eval "$R/data/test.csv" --eval-every $EVAL_EVERY --eval-n $EVAL_N $RL --seed $s --out "$R/$teacher/$m/seed$s"
        else
            run "$R/$teacher/$m/seed$s" $OPD distill --teacher "$T" --student "$(base_ckpt "$1" "$s")" \
                --data "$R/data/train.csv" --eval "$R/data/test.csv" --eval-every $EVAL_EVERY --eval-n $EVAL_N \
                $DISTILL $RELIABILITY $(loss_of "$1") $(method_args "$m") --seed $s --out "$R/$teacher/$m/seed$s"
        fi ;;
    esac
    exit 0
fi

# ------------------------------------------------------------------ the plan
# Jobs in phases (a phase waits for the one before), J at a time.
phase() {   # phase NAME < job lines
    echo "== [$preset] $1"
    xargs -r -P "$jobs" -L 1 sh "$self" --preset "$preset" --seeds "$seeds" --out "$out" --opd "$OPD" --job
}
start=$(date +%s)
mkdir -p "$out"
for r in $REGIMES; do echo "$r data"; done | phase "data"
{
    for r in $REGIMES; do
        [ "$(base_regime $r)" = "$r" ] || continue
        case " $(teachers_of $r) " in *" sft "*) for t in $TEACHER_SEEDS; do echo "$r teacher_sft $t"; done ;; esac
        case " $(teachers_of $r) " in *" rl "*) echo "$r base 0" ;; esac
        for s in $SEEDS; do echo "$r base $s"; done
    done
} | phase "teachers (SFT) and student warm starts (one per seed)"
{
    for r in $REGIMES; do
        case " $(teachers_of $r) " in *" rl "*) for t in 1 2 3; do echo "$r teacher_rl $t"; done ;; esac
        [ "$(base_regime $r)" = "$r" ] || for s in $SEEDS; do echo "$r base_eval $s"; done
        [ "$(base_regime $r)" = "$r" ] || for t in $TEACHER_SEEDS; do echo "$r teacher_sft $t"; done
    done
} | phase "RL teachers (GRPO from the seed-0 base); borrowed warm starts scored"
{
    # the longest runs first, so the last ones to finish are short
    for m in full rlvr adaptive popd topd50 topd25 topd10 topd05; do
        for r in $REGIMES; do
            for t in $(teachers_of $r); do
                case " $(methods_of $r $t) " in *" $m "*) for s in $SEEDS; do echo "$r $t $m $s"; done ;; esac
            done
        done
    done
} | phase "runs: every method x seed"
echo "== [$preset] runs finished in $(( $(date +%s) - start )) s"

# ------------------------------------------------------------------ tables
summary_all=$out/summary.md
{
    echo "# $preset preset: $seeds seed(s) per method"
    [ "$seeds" -eq 1 ] && echo && echo "**One seed**: the intervals below are a single run's value; they say nothing about run-to-run variation."
} >"$summary_all"
for r in $REGIMES; do
    R=$out/$r
    first=$(teachers_of $r); first=${first%% *}
    for t in $(teachers_of $r); do
        ms=$(methods_of $r $t)
        # the RLVR baseline does not depend on the teacher: one set of runs, in both tables
        case " $ms " in *" rlvr "*) ;; *) case " $METHODS_FIRST " in *" rlvr "*)
            # (copies of its logs, not a link: a tree with links does not copy plainly)
            for s in $SEEDS; do
                mkdir -p "$R/$t/rlvr/seed$s"
                cp "$R/$first/rlvr/seed$s/eval.csv" "$R/$first/rlvr/seed$s/log.csv" "$R/$t/rlvr/seed$s/"
            done
            ms="$ms rlvr" ;; esac ;; esac
        $OPD summarize --runs "$R/$t" --methods "$(echo $ms | tr ' ' ',')" --seeds "$seeds" --baseline full \
            --eval-n $EVAL_N --out "$R/$t/summary" >/dev/null
        {
            echo
            echo "## $r, teacher $t"
            echo
            if [ "$t" = rl ]; then
                echo "teacher (GRPO from the student's seed-0 base), over RL seeds: $($OPD summarize --evals "$(ls $R/teacher_rl/seed*_eval.csv | tr '\n' ',' | sed 's/,$//')"); the one used: RL seed 1, pass@1 $(awk -F, '$1 == "pass@1" && $2 == "all" {print $3}' "$R/teacher_rl/seed1_eval.csv")"
            else
                echo "teacher (SFT, $TEACHER), over SFT seeds: $($OPD summarize --evals "$(ls $R/teacher_sft/seed*_eval.csv | tr '\n' ',' | sed 's/,$//')"); the one used: SFT seed ${TEACHER_SEEDS%% *}, pass@1 $(awk -F, '$1 == "pass@1" && $2 == "all" {print $3}' "$R/teacher_sft/seed${TEACHER_SEEDS%% *}_eval.csv")"
            fi
            echo
            echo "student warm starts, over seeds: $($OPD summarize --evals "$(for s in $SEEDS; do printf '%s,' "$R/base/seed${s}_eval.csv"; done | sed 's/,$//')")"
            echo
            cat "$R/$t/summary.md"
        } >>"$summary_all"
    done
done
if [ -f "$out/jobs.csv" ]; then
    awk -F, '{ s += $2 } END { printf "\njobs: %d, %.0f s of one core in all (jobs.csv; J = %d at a time)\n", NR, s, '"$jobs"' }' \
        "$out/jobs.csv" >>"$summary_all"
fi
cat "$summary_all"

# ------------------------------------------------------------------ plots
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "gnuplot not found: no plots (apt-get install gnuplot-nox)"
    exit 0
fi
label() {
    case "$1" in
    full) echo "full OPD" ;; popd) echo "POPD" ;; adaptive) echo "adaptive" ;; rlvr) echo "RLVR (GRPO)" ;;
    topd05) echo "TOPD rho=0.05" ;; topd10) echo "TOPD rho=0.10" ;; topd25) echo "TOPD rho=0.25" ;;
    topd50) echo "TOPD rho=0.50" ;; *) echo "$1" ;;
    esac
}
for r in $REGIMES; do
    for t in $(teachers_of $r); do
        D=$out/$r/$t
        ms=$(awk -F, 'NR > 1 && !seen[$1]++ {print $1}' "$D/summary_curves.csv")
        plot=""
        for m in $ms; do
            awk -F, -v m="$m" 'NR > 1 && $1 == m {print $4, $6, $7, $8}' "$D/summary_curves.csv" >"$D/curve_$m.dat"
            plot="$plot \"$D/curve_$m.dat\" using 1:3:4 with filledcurves fs transparent solid 0.15 notitle, \"$D/curve_$m.dat\" using 1:2 with linespoints title \"$(label $m)\","
        done
        gnuplot <<GP && echo "wrote $D/accuracy_vs_time.png"
set terminal pngcairo size 900,560 noenhanced
set output "$D/accuracy_vs_time.png"
set yrange [0:1.05]
set key bottom right
set grid
set xlabel "training wall-clock, mean over seeds (s, one core per run)"
set ylabel "test pass@1 (greedy, full horizon)"
set title "$r task, $t teacher: mean and 95% bootstrap band over $seeds seed(s)"
plot ${plot%,}
GP
        # the horizon sweep: TOPD at the rho run (0.05 .. 0.5) and full OPD (rho = 1)
        if grep -q '^topd50,' "$D/summary.csv" 2>/dev/null; then
            awk -F, 'NR > 1 { r = ""
                if ($1 == "topd05") r = 0.05; if ($1 == "topd10") r = 0.10; if ($1 == "topd25") r = 0.25
                if ($1 == "topd50") r = 0.50; if ($1 == "full") r = 1
                if (r != "") print r, $3, $4, $5, $25, $29, $35 }' "$D/summary.csv" | sort -g >"$D/sweep.dat"
            gnuplot <<GP && echo "wrote $D/horizon_sweep.png"
set terminal pngcairo size 1000,420 noenhanced
set output "$D/horizon_sweep.png"
set multiplot layout 1,2 title "$r task, $t teacher: TOPD horizon H = rho T ($seeds seeds, 95% intervals)"
set logscale x
set xrange [0.04:1.2]
set grid
set xlabel "rho (H / T; 1 = full OPD)"
set ylabel "final test pass@1"
set yrange [0:1.05]
plot "$D/sweep.dat" using 1:2:3:4 with yerrorlines title "final pass@1"
set ylabel "cost relative to full OPD"
set yrange [0:1.1]
set key top left
plot "$D/sweep.dat" using 1:5 with linespoints title "train seconds", \
     "" using 1:6 with linespoints title "tokens generated", \
     "" using 1:7 with linespoints title "peak memory"
unset multiplot
GP
        fi
        # teacher reliability by position: seed 1 of full OPD and of TOPD 0.1
        for m in full topd10; do
            if [ -f "$D/$m/seed1/positions.csv" ] && [ -f "$(dirname "$self")/plot_positions.sh" ]; then
                sh "$(dirname "$self")/plot_positions.sh" "$D/$m/seed1" "$D/positions_${m}_seed1" || true
            fi
        done
    done
done
echo "== [$preset] done in $(( $(date +%s) - start )) s"
