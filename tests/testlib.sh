# testlib.sh — what the shell tests share (sourced: . "$(dirname "$0")/testlib.sh"):
# a temporary directory $dir removed at exit, the ok/bad counters, run, same,
# and normalize, the deterministic part of a distill run for cmp.
OPD=${OPD:-./opd}
PY=${DEBIAN_PYTHON:-python3}
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
same() {  # same NAME FILE FILE
    if cmp -s "$2" "$3"; then ok "$1"; else bad "$1"; fi
}
# normalize DIR OUTPREFIX: DIR's log.csv (and eval.csv if there is one) without
# the wall-clock and RSS columns, and its student.safetensors without the
# opd.train.seconds metadata, as OUTPREFIX.log, .eval and .st
normalize() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) keep[i] = $i !~ /^(sec_|train_seconds|peak_rss_kb)/ }
             { s = ""; for (i = 1; i <= NF; i++) if (keep[i]) s = s $i ","; print s }' "$1/log.csv" >"$2.log"
    if [ -f "$1/eval.csv" ]; then
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) keep[i] = $i !~ /^(train_seconds|peak_rss_kb)/ }
                 { s = ""; for (i = 1; i <= NF; i++) if (keep[i]) s = s $i ","; print s }' "$1/eval.csv" >"$2.eval"
    fi
    "$PY" - "$1/student.safetensors" "$2.st" <<'PYEOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
del hdr["__metadata__"]["opd.train.seconds"]
open(sys.argv[2], "wb").write(json.dumps(hdr, sort_keys=True).encode() + raw[8 + n:])
PYEOF
}
