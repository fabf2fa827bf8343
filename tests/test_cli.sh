#!/bin/sh
# The command line as a user meets it: help, version, and bad input of every
# kind gives a one-line error naming the problem (and the file) and a non-zero
# exit, never a crash.
set -u
OPD=${OPD:-./opd}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# expect_fail NAME PATTERN CMD...: non-zero exit (not a signal) and stderr matching PATTERN
expect_fail() {
    name=$1; pat=$2; shift 2
    "$@" >"$dir/out" 2>"$dir/err"
    rc=$?
    if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
    if [ $rc -ge 128 ]; then bad "$name: killed by signal (rc $rc)"; cat "$dir/err"; return; fi
    if ! grep -q -- "$pat" "$dir/err"; then bad "$name: stderr lacks '$pat':"; cat "$dir/err"; return; fi
    ok "$name (rc $rc: $(head -n1 "$dir/err"))"
}
expect_ok() {
    name=$1; shift
    if "$@" >"$dir/out" 2>"$dir/err"; then ok "$name"; else bad "$name (rc $?)"; cat "$dir/err"; fi
}

expect_ok "--version" "$OPD" --version
grep -q "^opd " "$dir/out" || bad "--version prints 'opd VERSION'"
expect_ok "--help" "$OPD" --help
grep -q "Commands:" "$dir/out" || bad "--help lists the commands"
expect_fail "no command" "Usage" "$OPD"
expect_fail "unknown command" "unknown command 'frobnicate'" "$OPD" frobnicate
expect_fail "unknown option" "unrecognized option" "$OPD" init --bogus "$dir/x.safetensors"
expect_fail "non-numeric option" "'abc' is not an integer" "$OPD" init --layers abc "$dir/x.safetensors"
expect_fail "out-of-range option" "out of range" "$OPD" init --layers 0 "$dir/x.safetensors"
expect_fail "inconsistent config" "must be >= 1 and divide d_model" "$OPD" init --d-model 30 --heads 4 "$dir/x.safetensors"

ck="$dir/model.safetensors"
expect_ok "init" "$OPD" init --d-model 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 "$ck"
expect_ok "info" "$OPD" info "$ck"
grep -q "d_model=32" "$dir/out" || bad "info shows the config"

expect_fail "missing checkpoint" "$dir/nope.safetensors" "$OPD" info "$dir/nope.safetensors"
for n in 4 100 2000; do
    head -c $n "$ck" >"$dir/trunc.safetensors"
    expect_fail "truncated checkpoint ($n bytes)" "trunc.safetensors" "$OPD" info "$dir/trunc.safetensors"
done
size=$(wc -c <"$ck")
head -c $((size - 1)) "$ck" >"$dir/short.safetensors"
expect_fail "checkpoint one byte short" "short.safetensors" "$OPD" info "$dir/short.safetensors"
printf 'GARBAGE!' >"$dir/magic.safetensors"; tail -c +9 "$ck" >>"$dir/magic.safetensors"
expect_fail "wrong header length bytes" "magic.safetensors" "$OPD" info "$dir/magic.safetensors"
printf 'not a safetensors file at all, just text\n' >"$dir/text.safetensors"
expect_fail "not a safetensors file" "text.safetensors" "$OPD" info "$dir/text.safetensors"

# the same header with the config edited: the tensors no longer match it
PY=${DEBIAN_PYTHON:-python3}
edit() {  # edit SRC DST OLD NEW: replace a same-length string inside the JSON header
    "$PY" - "$@" <<'PYEOF'
import struct, sys
src, dst, old, new = sys.argv[1:5]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = raw[8:8 + n].decode()
assert old in hdr and len(old) == len(new), (old, new)
open(dst, "wb").write(raw[:8] + hdr.replace(old, new, 1).encode() + raw[8 + n:])
PYEOF
}
if edit "$ck" "$dir/shape.safetensors" '"opd.d_ff":"64"' '"opd.d_ff":"96"'; then
    expect_fail "shape mismatch" "shape" "$OPD" info "$dir/shape.safetensors"
else
    bad "could not build the shape-mismatch file (header format changed?)"
fi
if edit "$ck" "$dir/badmeta.safetensors" '"opd.n_layers":"2"' '"opd.n_layers":"x"'; then
    expect_fail "corrupt config value" "n_layers" "$OPD" info "$dir/badmeta.safetensors"
else
    bad "could not build the corrupt-metadata file"
fi

# a NaN weight: same layout, one float of the data replaced
"$PY" - "$ck" "$dir/nan.safetensors" <<'PYEOF'
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
b = hdr["model.norm.weight"]["data_offsets"][0]
raw[8 + n + b + 4 * 3: 8 + n + b + 4 * 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(raw)
PYEOF
expect_fail "NaN weight" "'model.norm.weight' element 3 is NaN" "$OPD" info "$dir/nan.safetensors"

# --device: cpu is the default; cuda fails clearly wherever it cannot run: in
# a build without CUDA with exit 2 before any work, in a CUDA build without a
# GPU with exit 1 naming opd_cuda_available's reason. (On a GPU it would run:
# then tests/gpu_check is the test, not this.)
"$OPD" data --out "$dir/dd" --min-steps 2 --max-steps 3 --train 8 --valid 2 --test 2 --seed 1 >/dev/null 2>&1 ||
    bad "data for the --device tests"
"$OPD" init --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 "$dir/tiny.safetensors" >/dev/null 2>&1 ||
    bad "init for the --device tests"
dev_args="--teacher $dir/tiny.safetensors --student $dir/tiny.safetensors --data $dir/dd/train.csv --steps 1 --batch 2"
expect_fail "--device gpu (unknown name)" "--device: 'gpu' is not cpu or cuda" "$OPD" distill $dev_args --out "$dir/dev0" --device gpu
expect_ok "--device cpu" "$OPD" distill $dev_args --out "$dir/dev1" --device cpu
grep -q "device cpu" "$dir/out" || bad "distill names the device it runs on"
"$OPD" distill $dev_args --out "$dir/dev2" --device cuda >"$dir/out" 2>"$dir/err"
rc=$?
if grep -q "this opd was built without CUDA: ./configure --with-cuda" "$dir/err"; then
    if [ $rc -eq 2 ]; then ok "--device cuda without CUDA: exit 2, '$(head -n1 "$dir/err")'"
    else bad "--device cuda without CUDA: exit $rc, want 2"; fi
    expect_fail "bench step --device cuda without CUDA" "built without CUDA" "$OPD" bench step --device cuda
elif grep -q "no usable GPU (opd_cuda_available: " "$dir/err"; then
    if [ $rc -ne 0 ] && [ $rc -lt 128 ]; then ok "--device cuda, CUDA build without a GPU: exit $rc, '$(head -n1 "$dir/err")'"
    else bad "--device cuda without a GPU: exit $rc"; fi
    expect_fail "bench step --device cuda without a GPU" "no usable GPU" "$OPD" bench step --device cuda
elif [ $rc -eq 0 ]; then
    ok "--device cuda ran (a GPU is present; tests/gpu_check checks its numbers)"
else
    bad "--device cuda: exit $rc without a clear reason:"; cat "$dir/err"
fi

# sft --eval-every / --stop-at: the pairing rules, and periodic scores printed
sft_args="--data $dir/dd/train.csv --d-model 16 --layers 1 --heads 2 --kv-heads 1 --ffn 32 --max-seq 48 --batch 2"
expect_fail "sft --stop-at without --eval-every" "--stop-at needs --eval-every" "$OPD" sft $sft_args --out "$dir/s.safetensors" --stop-at 0.5
expect_fail "sft --eval-every without --eval" "--eval-every needs --eval" "$OPD" sft $sft_args --out "$dir/s.safetensors" --eval-every 2
expect_fail "sft --stop-at out of range" "out of range" "$OPD" sft $sft_args --out "$dir/s.safetensors" --eval "$dir/dd/valid.csv" --eval-every 2 --stop-at 1.5
expect_ok "sft --eval-every 2" "$OPD" sft $sft_args --out "$dir/s.safetensors" --steps 4 --eval "$dir/dd/valid.csv" --eval-every 2 --stop-at 1
[ "$(grep -c '^sft step 2: pass@1' "$dir/out")" -eq 1 ] && grep -q "after 4 steps" "$dir/out" ||
    { bad "sft --eval-every prints the step-2 score and runs all 4 steps (no problem solved)"; cat "$dir/out"; }

# --stop-at stops at the first score that reaches it, and the score printed at
# the end is the one of the saved weights (opd eval agrees)
"$OPD" data --out "$dir/ds" --min-steps 2 --max-steps 3 --train 200 --valid 50 --test 2 --seed 1 >/dev/null 2>&1 ||
    bad "data for the --stop-at test"
expect_ok "sft --stop-at 0.1" "$OPD" sft --data "$dir/ds/train.csv" --out "$dir/stop.safetensors" --d-model 32 --layers 1 \
    --heads 2 --kv-heads 1 --ffn 64 --max-seq 48 --steps 400 --batch 16 --eval "$dir/ds/valid.csv" --eval-every 20 --stop-at 0.1
stop_line=$(grep "stopping after" "$dir/out")
final_acc=$(grep "^$dir/ds/valid.csv: pass@1" "$dir/out" | awk '{print $3}')
eval_acc=$("$OPD" eval --model "$dir/stop.safetensors" --data "$dir/ds/valid.csv" 2>/dev/null | awk '/greedy pass@1/ {print $5}')
if [ -n "$stop_line" ] && [ -n "$final_acc" ] && [ "$final_acc" = "$eval_acc" ]; then
    ok "sft --stop-at: '$stop_line', final $final_acc = opd eval $eval_acc"
else
    bad "sft --stop-at: stop line '$stop_line', final '$final_acc', opd eval '$eval_acc'"; cat "$dir/out"
fi

# --- bad input that once allocated, hung, clobbered or passed (issue 15) ---
# peak RSS of a command in kB (GNU time), empty when /usr/bin/time is missing
rss_of() { /usr/bin/time -f '%M' -o "$dir/rss" "$@" >/dev/null 2>&1; tail -n1 "$dir/rss" 2>/dev/null; }
# metadata-only checkpoints: the config claims 2 GB / 900 TB of weights and
# holds none; the file is checked before anything is allocated from it
"$PY" - "$dir" <<'PYEOF'
import json, struct, sys
d = sys.argv[1]
def write(path, meta):
    b = json.dumps({"__metadata__": meta}, separators=(",", ":")).encode()
    open(path, "wb").write(struct.pack("<Q", len(b)) + b)
cfg = {"format": "pt", "opd.vocab_size": "64", "opd.d_model": "8192", "opd.n_layers": "8",
       "opd.n_heads": "64", "opd.n_kv_heads": "8", "opd.d_ff": "32768", "opd.max_seq_len": "512",
       "opd.qkv_bias": "1", "opd.tie_embeddings": "0", "opd.rope_theta": "10000", "opd.rms_eps": "1e-06"}
write(d + "/claims2gb.safetensors", cfg)
cfg.update({"opd.d_model": "65536", "opd.n_layers": "1024", "opd.d_ff": "1048576", "opd.vocab_size": "1048576"})
write(d + "/claims900tb.safetensors", cfg)
PYEOF
for f in claims2gb claims900tb; do
    expect_fail "metadata-only checkpoint $f ($(wc -c <"$dir/$f.safetensors") bytes)" \
        "$f.safetensors: tensor 'model.embed_tokens.weight' is missing" "$OPD" info "$dir/$f.safetensors"
    if [ -x /usr/bin/time ]; then
        kb=$(rss_of "$OPD" info "$dir/$f.safetensors")
        if [ -n "$kb" ] && [ "$kb" -lt 102400 ]; then ok "$f: peak RSS $kb kB < 100 MB"
        else bad "$f: peak RSS '$kb' kB (want < 100 MB)"; fi
    fi
done

# outputs that are not regular files are refused, never replaced
mkfifo "$dir/fifo"
mkdir "$dir/adir"
ln -s "$dir/target.safetensors" "$dir/link.safetensors"
expect_fail "init onto a FIFO" "fifo: exists and is a FIFO (named pipe): refusing to replace it" "$OPD" init "$dir/fifo"
[ -p "$dir/fifo" ] && ok "the FIFO is still a FIFO" || bad "init replaced the FIFO"
expect_fail "init onto a directory" "adir: exists and is a directory" "$OPD" init "$dir/adir"
expect_fail "init onto a symlink" "link.safetensors: is a symbolic link" "$OPD" init "$dir/link.safetensors"
[ -L "$dir/link.safetensors" ] && [ ! -e "$dir/target.safetensors" ] && ok "the symlink is still a symlink" ||
    bad "init replaced the symlink"
# a device node (root only: mknod of a private copy of /dev/full, never the real one)
if mknod "$dir/full" c 1 7 2>/dev/null; then
    expect_fail "init onto a device node" "full: exists and is a character device" "$OPD" init "$dir/full"
    [ -c "$dir/full" ] && ok "the device node is still a device" || bad "init replaced the device node"
fi

# FIFOs and directories as input: a clear error at once, no blocking read
expect_fail "info of a FIFO" "fifo: is a FIFO (named pipe), not a regular file" timeout 20 "$OPD" info "$dir/fifo"
# a directory is read as a Hugging Face model directory (ref/hf_model.c): one without
# config.json says so
expect_fail "info of a directory" "adir: no config.json: not a Hugging Face model directory" "$OPD" info "$dir/adir"
expect_fail "eval --data FIFO" "fifo: is a FIFO (named pipe), not a regular file" \
    timeout 20 "$OPD" eval --model "$ck" --data "$dir/fifo"
expect_fail "eval --data directory" "adir: is a directory, not a regular file" "$OPD" eval --model "$ck" --data "$dir/adir"

# a CSV larger than the 1 GiB cap is refused before it is read (a sparse file)
if truncate -s 1100M "$dir/huge.csv" 2>/dev/null; then
    expect_fail "CSV over 1 GiB" "huge.csv: 1153433600 bytes, larger than the 1024 MiB" \
        "$OPD" eval --model "$ck" --data "$dir/huge.csv"
    rm -f "$dir/huge.csv"
fi

# opd data on a full disk names the file and the cause (OPD_FAIL_WRITE_AFTER:
# the library's test hook, a write fails with ENOSPC after N bytes), and
# under a file-size limit (ulimit -f, SIGXFSZ ignored: EFBIG)
expect_fail "opd data, disk full" "dfull/train.csv: write failed: No space left on device" \
    env OPD_FAIL_WRITE_AFTER=100 "$OPD" data --out "$dir/dfull" --train 50 --valid 2 --test 2
expect_fail "opd data, file-size limit" "dlim/train.csv: write failed: File too large" \
    sh -c "ulimit -f 2; trap '' XFSZ; exec \"\$0\" data --out \"\$1\" --train 200 --valid 2 --test 2" "$OPD" "$dir/dlim"
[ -z "$(ls "$dir/dfull" "$dir/dlim" | grep '\.tmp\.')" ] && ok "no temporary file left by the failed writes" ||
    bad "temporary files left: $(ls "$dir/dfull" "$dir/dlim")"
# a temporary file a killed writer left is removed by the next write of that file
mkdir -p "$dir/dstale"; : >"$dir/dstale/train.csv.tmp.Ab12Cd"
expect_ok "opd data after a killed one" "$OPD" data --out "$dir/dstale" --train 4 --valid 2 --test 2
[ ! -e "$dir/dstale/train.csv.tmp.Ab12Cd" ] && ok "stale temporary removed" || bad "stale temporary still there"

# options: what --help documents works, what would be ignored is an error
expect_fail "sft --vocab 10 (the tokenizer has 64 tokens)" "--vocab 10: sft trains on the tokenizer's vocabulary" \
    "$OPD" sft $sft_args --out "$dir/s.safetensors" --vocab 10
expect_fail "sft --init with model options" "do not apply with --init" \
    "$OPD" sft --data "$dir/dd/train.csv" --out "$dir/s2.safetensors" --init "$dir/tiny.safetensors" --d-model 64
expect_ok "distill -B 2 -n 1 (short options of --help)" "$OPD" distill --teacher "$dir/tiny.safetensors" \
    --student "$dir/tiny.safetensors" --data "$dir/dd/train.csv" -B 2 -n 1 --out "$dir/short"
grep -q "2 prompts x 1 samples, 1 steps" "$dir/out" && ok "-B and -n took effect" || { bad "-B / -n not applied"; cat "$dir/out"; }

# golden check: a check that compares nothing, or reads outside its
# directories, fails; 100,000 tensors are looked up by name, not scanned
mkdir -p "$dir/g1" "$dir/g2"
cp "$ck" "$dir/g1/m.safetensors"; cp "$ck" "$dir/g2/m.safetensors"
printf '{"format": "opd golden manifest v1", "tensors": []}\n' >"$dir/g1/manifest.json"
expect_fail "golden check, empty manifest" "nothing was compared" "$OPD" golden check "$dir/g1" "$dir/g2"
printf '{"tensors": [{"file": "../../elsewhere.safetensors", "name": "x", "max_abs": 0, "max_rel": 0, "max_ulp": 0, "nmse": 0}]}\n' \
    >"$dir/g1/manifest.json"
expect_fail "golden check, manifest path leaving the directory" \
    "file \"../../elsewhere.safetensors\" is not a plain file name" "$OPD" golden check "$dir/g1" "$dir/g2"
printf '{"tensors": [{"file": "/etc/passwd", "name": "x", "max_abs": 0, "max_rel": 0, "max_ulp": 0, "nmse": 0}]}\n' \
    >"$dir/g1/manifest.json"
expect_fail "golden check of a FIFO" "fifo: neither a regular file nor a directory" timeout 20 "$OPD" golden check "$dir/fifo" "$ck"
expect_fail "golden check, absolute manifest path" "is not a plain file name" "$OPD" golden check "$dir/g1" "$dir/g2"
"$PY" - "$dir/g1" <<'PYEOF'
import json, struct, sys
d = sys.argv[1]
hdr = {}
for i in range(100000):
    hdr["t%06d" % (99999 - i)] = {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
b = json.dumps(hdr, separators=(",", ":")).encode()
b += b" " * (-len(b) % 8)
open(d + "/many.safetensors", "wb").write(struct.pack("<Q", len(b)) + b + bytes(400000))
ents = [{"file": "many.safetensors", "name": "t%06d" % i, "max_abs": 0, "max_rel": 0, "max_ulp": 0, "nmse": 0}
        for i in range(100000)]
json.dump({"format": "opd golden manifest v1", "tensors": ents}, open(d + "/manifest.json", "w"))
PYEOF
cp "$dir/g1/many.safetensors" "$dir/g2/"
start=$(date +%s)
expect_ok "golden check of 100,000 tensors" "$OPD" golden check --quiet "$dir/g1" "$dir/g2"
secs=$(( $(date +%s) - start ))
grep -q "golden: 100000 passed, 0 failed" "$dir/out" && [ "$secs" -le 20 ] &&
    ok "  ... all compared in $secs s (quadratic took 54 s)" || bad "  ... $secs s: $(tail -n1 "$dir/out")"

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
