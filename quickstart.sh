#!/bin/sh
# quickstart.sh — install what opd needs (Debian packages, when missing), build,
# and run the main job on its small default.
#   sh quickstart.sh              install + build + run the demo
#   sh quickstart.sh --build-only install + build (what .ci/run uses)
set -eu
cd "$(dirname "$0")"

PKGS="build-essential autoconf automake libtool pkg-config libopenblas-openmp-dev libdnnl-dev \
libcsv-dev libcunit1-dev libjansson-dev libpcre2-dev libunistring-dev python3-torch python3-numpy \
python3-venv python3-pip gnuplot-nox"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

echo "== building"
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure
make -j"$(nproc)"

[ "${1:-}" = "--build-only" ] && exit 0
echo "== running the demo"
sh eval/experiment/experiment.sh --preset demo
