#!/bin/sh
# Fault injection: `opd distill --save-every 1` killed with SIGKILL at random
# points, then resumed. After every kill the checkpoint (if one was written
# yet) must load; the resumed run's final checkpoint, log.csv and eval.csv
# must equal an uninterrupted run's, bit for bit, and no temporary file may
# remain. `opd data` is killed the same way.
#
# Temporary files: a write goes to an unnamed O_TMPFILE, which gets a name
# (FILE.tmp.XXXXXX) only between its linkat and the rename over FILE, a few
# microseconds (Linux cannot link over an existing name). A kill inside that
# window (it happens on a loaded machine) leaves that name behind; it is a
# complete, fsynced file, and the next write of FILE removes it. So right
# after a kill a temporary must be complete (a checkpoint that loads, a CSV
# with its header and a final newline), and after the rerun none may remain.
#
# What is compared: a log column that holds wall-clock seconds or the peak
# RSS (sec_*, train_seconds, peak_rss_kb) differs from run to run, so those
# columns are cut before the cmp; so is the checkpoint's opd.train.seconds
# metadata. Every other byte (weights, AdamW moments, step, tokens, losses,
# horizons, scores) must be identical.
#
# KILL_ROUNDS (default 20) and KILL_SEED (default: from the clock, printed)
# make a failing run reproducible.
set -u
. "$(dirname "$0")/testlib.sh"   # $dir, ok/bad, normalize
ROUNDS=${KILL_ROUNDS:-20}
SEED=${KILL_SEED:-$(date +%s)}
echo "kill test: $ROUNDS rounds, KILL_SEED=$SEED"

"$OPD" data --out "$dir/d" --min-steps 2 --max-steps 4 --train 64 --valid 8 --test 8 --seed 3 >/dev/null &&
"$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --max-seq 48 --seed 1 "$dir/t.st" >/dev/null &&
"$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --seed 2 "$dir/s.st" >/dev/null ||
    { echo "FAIL setup"; exit 1; }
args="--teacher $dir/t.st --student $dir/s.st --data $dir/d/train.csv --batch 3 --samples 2 --lr 1e-2 --seed 5
      --method popd --h0 4 --dh 4 --dk 2 --steps 30 --save-every 1 --eval $dir/d/test.csv --eval-every 3"

now() { date +%s.%N; }

"$OPD" distill $args --out "$dir/ref" >"$dir/ref.out" 2>&1 || { echo "FAIL uninterrupted run"; cat "$dir/ref.out"; exit 1; }
normalize "$dir/ref" "$dir/ref" || { echo "FAIL normalize"; exit 1; }
# a second, timed run (warm caches, like the killed ones): the same outputs,
# and its duration spreads the kills over the run
t0=$(now)
"$OPD" distill $args --out "$dir/ref2" >"$dir/ref.out" 2>&1 || { echo "FAIL second uninterrupted run"; exit 1; }
t1=$(now)
normalize "$dir/ref2" "$dir/ref2"
if cmp -s "$dir/ref.st" "$dir/ref2.st" && cmp -s "$dir/ref.log" "$dir/ref2.log" && cmp -s "$dir/ref.eval" "$dir/ref2.eval"; then
    ok "two uninterrupted runs agree (the baseline is deterministic)"
else
    bad "two uninterrupted runs differ: nothing to compare against"
fi
run_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
echo "uninterrupted run: $run_s s; kills land uniformly in [0, 0.9 x that]"

temps() { find "$1" -name '*.tmp.*' 2>/dev/null | head -n 3; }
# complete_temps DIR: every temporary in DIR is a complete file (see above)
window=0
complete_temps() {
    for f in $(find "$1" -name '*.tmp.*' 2>/dev/null); do
        case $f in
            *.safetensors.tmp.*) "$OPD" info "$f" >/dev/null 2>&1 || return 1 ;;
            *.csv.tmp.*)   # a log (step,...) or a split (id,steps,...), ending in a newline
                head -n1 "$f" | grep -q -e '^step,' -e '^id,steps,' &&
                    [ "$(tail -c1 "$f" | od -An -c | tr -d ' ')" = '\n' ] || return 1 ;;
            *) return 1 ;;
        esac
        window=$((window + 1))
        echo "     (killed in the commit window of $f: complete)"
    done
    return 0
}
r=1
while [ "$r" -le "$ROUNDS" ]; do
    out="$dir/k$r"
    delay=$(awk -v s="$SEED" -v r="$r" -v t="$run_s" 'BEGIN { srand((s % 100000) * 100 + r); printf "%.3f", rand() * t * 0.9 }')
    "$OPD" distill $args --out "$out" >"$dir/run.out" 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    what="round $r (kill at ${delay} s)"
    complete_temps "$out" || bad "$what: a partial temporary file was left: $(temps "$out")"
    if [ -f "$out/student.safetensors" ]; then
        "$OPD" info "$out/student.safetensors" >/dev/null 2>"$dir/info.err" ||
            { bad "$what: the checkpoint does not load: $(cat "$dir/info.err")"; r=$((r + 1)); continue; }
        step=$("$PY" -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; print(json.loads(f.read(n))["__metadata__"]["opd.train.step"])' "$out/student.safetensors")
        resume="--resume"; at="checkpoint at step $step"
    else
        resume=""; at="no checkpoint yet"
    fi
    if ! "$OPD" distill $args $resume --out "$out" >"$dir/run.out" 2>&1; then
        bad "$what, $at: the rerun failed:"; cat "$dir/run.out"; r=$((r + 1)); continue
    fi
    t=$(temps "$out")
    normalize "$out" "$dir/k" &&
    if [ -z "$t" ] && cmp "$dir/ref.st" "$dir/k.st" && cmp "$dir/ref.log" "$dir/k.log" && cmp "$dir/ref.eval" "$dir/k.eval"; then
        ok "$what, $at: resumed run == uninterrupted run (checkpoint, log.csv, eval.csv)"
    else
        bad "$what, $at: resumed run differs from the uninterrupted one (or temporaries left: $t)"
    fi
    r=$((r + 1))
done

# opd data killed mid-write leaves no temporary file (and the next run works)
for r in 1 2 3 4 5; do
    delay=$(awk -v s="$SEED" -v r="$r" 'BEGIN { srand((s % 100000) * 100 + 50 + r); printf "%.3f", rand() * 0.3 }')
    "$OPD" data --out "$dir/data$r" --train 30000 --valid 100 --test 100 >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    complete_temps "$dir/data$r" || bad "opd data killed at $delay s: a partial temporary file: $(temps "$dir/data$r")"
    "$OPD" data --out "$dir/data$r" --train 30000 --valid 100 --test 100 >/dev/null 2>&1 || bad "opd data rerun"
    t=$(temps "$dir/data$r")
    [ -z "$t" ] && ok "opd data killed at $delay s, rerun: no temporary file" || bad "opd data killed at $delay s, rerun: left $t"
done
echo "kills inside a commit window (a complete temporary, removed by the rerun): $window"

echo "kill: $pass passed, $fail failed"
[ $fail -eq 0 ]
