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

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
