#!/bin/sh
# Cross-check of opd's Hugging Face directory reader / writer against
# transformers (tests/hf_crosscheck.py) in the build's Python venv
# (tests/pyenv.sh). It fails, never skips, when the venv cannot be made.
set -u
build=${OPD_BUILDDIR:-.}
src=${OPD_SRCDIR:-.}
venv="$build/.venv-test"
sh "$src/tests/pyenv.sh" "$venv" || { echo "FAIL: no Python environment for the cross-check (tests/pyenv.sh)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$venv/bin/python" "$src/tests/hf_crosscheck.py" "${OPD:-$build/opd}" "$build/tests/hf_dump" "$dir"
