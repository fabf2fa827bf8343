#!/bin/sh
# pyenv.sh DIR — the Python environment of the cross-checks that need more
# than Debian's packages: a venv over Debian's interpreter (it still sees
# python3-torch and python3-numpy) with Hugging Face transformers and
# tokenizers at pinned versions. Made once and reused while the stamp file
# names the same pins; pip needs PyPI the first time, and a failure is loud.
set -u
dir=${1:?usage: pyenv.sh DIR}
PY=${DEBIAN_PYTHON:-/usr/bin/python3}
# transformers 4.44.2 is the newest that runs on Debian 12's torch 1.13;
# tokenizers 0.19.1 is the version it asks for.
PINS="transformers==4.44.2 tokenizers==0.19.1"
stamp="$dir/.opd-pins"
# Two cross-checks may ask at once (make -j2 check): the second waits on a
# lock beside DIR (flock, util-linux) instead of making the venv over the
# first one's half-made copy.
if [ -z "${OPD_PYENV_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    mkdir -p "$(dirname "$dir")"
    OPD_PYENV_LOCKED=1 exec flock "$dir.lock" sh "$0" "$@"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] && [ -x "$dir/bin/python" ]; then
    exit 0
fi
echo "pyenv: creating $dir ($PINS)"
rm -rf "$dir"
if ! "$PY" -m venv --system-site-packages "$dir"; then
    echo "pyenv: FAILED: '$PY -m venv' (apt-get install python3-venv)" >&2
    exit 1
fi
if ! "$dir/bin/pip" install --disable-pip-version-check -q $PINS; then
    echo "pyenv: FAILED: pip could not install $PINS into $dir (is PyPI reachable?)" >&2
    exit 1
fi
echo "$PINS" > "$stamp"
