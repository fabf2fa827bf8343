#!/bin/sh
# plot_positions.sh RUN_DIR OUT_PREFIX — the per-position diagnostics of an
# `opd distill` run (ref/SPEC.md section 11) as three PNGs:
#   OUT_PREFIX_rkl.png          position bucket x step heatmap of the masked
#                               reverse KL (RUN_DIR/positions.csv)
#   OUT_PREFIX_overlap.png      the same for the student/teacher top-5 overlap
#   OUT_PREFIX_reliability.png  the teacher's accuracy continuing the
#                               student's prefix, by prefix length, one line
#                               per measured step (RUN_DIR/reliability.csv)
# Buckets nothing was trained in (nan) stay blank. Needs gnuplot: without it
# the script says so and exits 0 (nothing to draw is not an error either).
set -eu
if [ $# -ne 2 ]; then
    echo "usage: $0 RUN_DIR OUT_PREFIX" >&2
    exit 2
fi
run=$1
out=$2
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "plot_positions.sh: gnuplot not found, no plots drawn (apt-get install gnuplot-nox)"
    exit 0
fi
pos=$run/positions.csv
rel=$run/reliability.csv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -f "$pos" ]; then
    # one rectangle per (step, bucket) measured: step, pos_lo, pos_hi, value
    # (buckets nothing was trained in, nan, are left out: blank)
    for what in rkl overlap; do
        awk -F, -v w="$what" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
            $c[w] != "nan" { print $1, $c["pos_lo"], $c["pos_hi"], $c[w] }' "$pos" >"$tmp/$what.dat"
    done
    T=$(awk -F, 'NR > 1 && $4 + 1 > t { t = $4 + 1 } END { print t + 0 }' "$pos")   # the full horizon
    nsteps=$(awk -F, 'NR > 1 { s[$1] = 1 } END { print length(s) }' "$pos")
    if [ "$nsteps" -ge 2 ]; then
        for what in rkl overlap; do
            case $what in
                rkl) title="reverse KL(student || teacher) by position"; range="[0:*]" ;;
                overlap) title="student/teacher top-5 overlap by position"; range="[0:1]" ;;
            esac
            gnuplot <<EOF
set terminal pngcairo size 900,500
set output "${out}_${what}.png"
set title "$title ($run)" noenhanced
set xlabel "step"
set ylabel "rollout position"
set cblabel "$what"
set cbrange $range
set yrange [0:$T]
set xrange [-0.5:*]
set palette rgbformulae 33,13,10
set style fill solid noborder
plot "$tmp/$what.dat" using 1:((\$2 + \$3 + 1) / 2):(0.5):((\$3 - \$2 + 1) / 2):4 with boxxyerror lc palette notitle
EOF
            echo "wrote ${out}_${what}.png"
        done
    else
        echo "plot_positions.sh: $pos has fewer than 2 steps, no heatmap"
    fi
else
    echo "plot_positions.sh: no $pos (a --device cuda run, or --no-positions)"
fi

if [ -f "$rel" ]; then
    # one file and one line per measured step
    plots=""
    for s in $(awk -F, 'NR > 1 && !seen[$1]++ { print $1 }' "$rel"); do
        awk -F, -v s="$s" 'NR > 1 && $1 == s { print $3, $5 }' "$rel" >"$tmp/rel_$s.dat"
        plots="$plots${plots:+, }\"$tmp/rel_$s.dat\" using 1:2 with linespoints title \"step $s\""
    done
    if [ -n "$plots" ]; then
        gnuplot <<EOF
set terminal pngcairo size 800,500
set output "${out}_reliability.png"
set title "teacher accuracy from the student's prefix ($run)" noenhanced
set xlabel "student prefix length (tokens)"
set ylabel "teacher greedy accuracy"
set yrange [0:1.05]
set key outside right
plot $plots
EOF
        echo "wrote ${out}_reliability.png"
    fi
else
    echo "plot_positions.sh: no $rel (needs --eval; off with --reliability-every 0)"
fi
