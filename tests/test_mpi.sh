#!/bin/sh
# Data parallelism over MPI ranks (ref/opd_dist.h), on tiny models: the same
# bits for R = 1, 2 and 4 ranks and for the plain ./opd (no mpirun) with the
# same --micro-batch; a run saved at R = 2 resumes at R = 4 bit for bit; a
# rank killed mid-run ends the job within seconds and the last checkpoint
# loads; unsupported (R, micro-batch) and bad input are refused clearly;
# `opd eval` split over ranks prints the same table.
# SKIP (77) unless opd was built with ./configure --with-mpi and mpirun exists.
# One machine, loopback only (shared memory + self), oversubscribed, as root
# if need be (OpenMPI's allow-run-as-root variables).
set -u
grep -q "define OPD_HAVE_MPI 1" config.h 2>/dev/null || { echo "SKIP: opd built without MPI (./configure --with-mpi)"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe --bind-to none --mca btl self,vader --mca btl_tcp_if_include lo"
. "$(dirname "$0")/testlib.sh"   # $dir, ok/bad, run, same, normalize

run "data" "$OPD" data --out "$dir/d" --min-steps 2 --max-steps 4 --train 64 --valid 8 --test 8 --seed 3
run "init teacher" "$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --max-seq 48 --seed 1 "$dir/t.st"
run "init student" "$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --seed 2 "$dir/s.st"
# 4 prompts x 2 samples = 8 sequences, micro-batches of 2: M = 4
common="--teacher $dir/t.st --student $dir/s.st --data $dir/d/train.csv --batch 4 --samples 2 --lr 1e-2 --seed 5 --micro-batch 2"

# --- distill: R = 1, 2, 4 and the plain process give the same bits
run "distill 3 steps, plain ./opd" "$OPD" distill $common --steps 3 --out "$dir/P"
normalize "$dir/P" "$dir/P"
for R in 1 2 4; do
    run "distill 3 steps, mpirun -np $R" $MPIRUN -np $R "$OPD" distill $common --steps 3 --out "$dir/R$R"
    normalize "$dir/R$R" "$dir/R$R"
    same "distill R=$R checkpoint == plain ./opd's (cmp)" "$dir/P.st" "$dir/R$R.st"
    same "distill R=$R log == plain ./opd's (but time/RSS)" "$dir/P.log" "$dir/R$R.log"
done

# --- sft: the same, micro-batches of 2 of a batch of 8
sft="--data $dir/d/train.csv --steps 3 --batch 8 --micro-batch 2 --warmup 1 --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --seed 4"
run "sft 3 steps, plain ./opd" "$OPD" sft $sft --out "$dir/sftP.st"
for R in 1 2 4; do
    run "sft 3 steps, mpirun -np $R" $MPIRUN -np $R "$OPD" sft $sft --out "$dir/sft$R.st"
    same "sft R=$R checkpoint == plain ./opd's (cmp)" "$dir/sftP.st" "$dir/sft$R.st"
done

# --- the non-MPI build (OPD_NONMPI, a ./configure without --with-mpi; .ci/run
# sets it to the root build) gives the same bits with the same --micro-batch
if [ -n "${OPD_NONMPI:-}" ] && [ -x "$OPD_NONMPI" ]; then
    run "distill 3 steps, the non-MPI build" "$OPD_NONMPI" distill $common --steps 3 --out "$dir/N"
    normalize "$dir/N" "$dir/N"
    same "distill non-MPI build checkpoint == MPI build's (cmp)" "$dir/P.st" "$dir/N.st"
    same "distill non-MPI build log == MPI build's (but time/RSS)" "$dir/P.log" "$dir/N.log"
    run "sft 3 steps, the non-MPI build" "$OPD_NONMPI" sft $sft --out "$dir/sftN.st"
    same "sft non-MPI build checkpoint == MPI build's (cmp)" "$dir/sftP.st" "$dir/sftN.st"
else
    echo "note: OPD_NONMPI not set: the comparison with the non-MPI build is not run"
fi

# --- saved at R = 2, resumed at R = 4 == the uninterrupted run
run "distill 4 steps uninterrupted, R=1" $MPIRUN -np 1 "$OPD" distill $common --steps 4 --out "$dir/U"
run "distill stopped after 2 at R=2" $MPIRUN -np 2 "$OPD" distill $common --steps 4 --stop-after 2 --out "$dir/S"
run "distill resumed at R=4" $MPIRUN -np 4 "$OPD" distill $common --steps 4 --resume --out "$dir/S"
normalize "$dir/U" "$dir/U"
normalize "$dir/S" "$dir/S"
same "R=2 then R=4 checkpoint == uninterrupted (cmp)" "$dir/U.st" "$dir/S.st"
same "R=2 then R=4 log == uninterrupted (but time/RSS)" "$dir/U.log" "$dir/S.log"

# --- a rank killed mid-run: the job ends within seconds, non-zero, and the
# last checkpoint (rank 0's, atomic) loads
$MPIRUN -np 2 "$OPD" distill $common --steps 100000 --save-every 1 --out "$dir/K" >"$dir/kill.out" 2>&1 &
mp=$!
i=0
while [ ! -f "$dir/K/student.safetensors" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
victim=$(pgrep -P $mp -f "opd distill" | tail -n 1)
if [ -z "$victim" ]; then
    bad "kill: no rank process found under mpirun $mp"; kill $mp 2>/dev/null
else
    t0=$(date +%s)
    kill -9 "$victim"
    i=0
    while kill -0 $mp 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $mp 2>/dev/null; then bad "kill: job still running 30 s after a rank died"; kill -9 $mp; fi
    wait $mp; rc=$?
    dt=$(( $(date +%s) - t0 ))
    [ $rc -ne 0 ] && [ $dt -le 10 ] && ok "rank $victim killed: job ended in ${dt} s with rc $rc" ||
        { bad "killed rank: rc $rc after ${dt} s"; tail -5 "$dir/kill.out"; }
    run "last checkpoint loads (opd info)" "$OPD" info "$dir/K/student.safetensors"
fi

# --- refused before any work, with one clear line
expect_refused() {  # NAME PATTERN CMD...
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    if [ $rc -ne 0 ] && grep -q -- "$pat" "$dir/err"; then ok "$name ($(grep -- "$pat" "$dir/err" | head -n 1))"
    else bad "$name: rc $rc"; cat "$dir/err"; fi
}
expect_refused "3 ranks refused" "power of two" $MPIRUN -np 3 "$OPD" distill $common --steps 1 --out "$dir/X"
expect_refused "2 ranks, 1 micro-batch refused" "do not divide" \
    $MPIRUN -np 2 "$OPD" distill $common --micro-batch 8 --steps 1 --out "$dir/X"
expect_refused "micro-batch not dividing the batch refused" "must divide" \
    $MPIRUN -np 2 "$OPD" sft $sft --micro-batch 3 --out "$dir/X.st"
expect_refused "bad input stops the job" "rank" \
    $MPIRUN -np 2 "$OPD" distill $common --data "$dir/nonexistent.csv" --steps 1 --out "$dir/X"

# --- eval split over ranks: the same table
run "eval, plain ./opd" "$OPD" eval --model "$dir/P/student.safetensors" --data "$dir/d/test.csv" --batch 2
mv "$dir/out" "$dir/evalP"
run "eval, mpirun -np 2" $MPIRUN -np 2 "$OPD" eval --model "$dir/P/student.safetensors" --data "$dir/d/test.csv" --batch 2
same "eval over 2 ranks prints the same table" "$dir/evalP" "$dir/out"

echo "test_mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
