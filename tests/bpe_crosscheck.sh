#!/bin/sh
# Cross-check of opd's tokenizer.json reader against Hugging Face tokenizers
# (tests/bpe_crosscheck.py) in the build's Python venv (tests/pyenv.sh). It
# fails, never skips, when the venv cannot be made: CI has PyPI.
set -u
build=${OPD_BUILDDIR:-.}
src=${OPD_SRCDIR:-.}
venv="$build/.venv-test"
sh "$src/tests/pyenv.sh" "$venv" || { echo "FAIL: no Python environment for the cross-check (tests/pyenv.sh)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$venv/bin/python" "$src/tests/bpe_crosscheck.py" "$build/tests/bpe_dump" "$dir"
