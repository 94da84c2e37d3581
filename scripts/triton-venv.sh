#!/usr/bin/env bash
# A real Triton Inference Server (NVIDIA PyTriton 0.7.0, which bundles tritonserver) in a
# virtualenv of its own, .venv-triton: it needs NumPy < 2, which the controller's environment
# does not share. scripts/triton_serve.py runs there; the controller talks to it over HTTP
# (tritonclient[http], the `triton` extra). scripts/bootstrap.sh runs this script;
# EDGEFLEET_SKIP_TRITON=1 there skips it (then the Triton backend's tests are skipped).
#
# Debian's /usr/bin/python3.11 by default: PyTriton's server fails on a pyenv-built Python.
# Idempotent: a stamp file records the pinned set installed (scripts/triton-requirements.txt);
# a marker file says the virtualenv is incomplete while installing (the tests ignore it then).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${TRITON_PYTHON:-/usr/bin/python3.11}"
VENV=.venv-triton
REQUIREMENTS=scripts/triton-requirements.txt
STAMP="$VENV/.edgefleet-requirements.txt"
INCOMPLETE="$VENV/.edgefleet-incomplete" # the name the tests check

imports_ok() {
  "$VENV/bin/python" -c 'import pytriton.triton, onnxruntime' 2>/dev/null
}

if [ -x "$VENV/bin/python" ] && [ ! -e "$INCOMPLETE" ] && cmp -s "$REQUIREMENTS" "$STAMP" \
  && imports_ok; then
  echo "Triton server up to date: $PWD/$VENV/bin/python" >&2
  exit 0
fi
if [ ! -x "$PYTHON" ]; then
  echo "error: $PYTHON not found; PyTriton needs a system Python 3.8-3.12 (TRITON_PYTHON=...)," \
    "or run bootstrap with EDGEFLEET_SKIP_TRITON=1" >&2
  exit 1
fi
created=0
finish() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$created" = 1 ]; then
    rm -rf "$VENV"
    echo "Triton server: install failed (exit $rc); removed the new $VENV" >&2
  fi
}
trap finish EXIT
if [ ! -x "$VENV/bin/python" ]; then
  created=1
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
: >"$INCOMPLETE"
rm -f "$STAMP"
echo "installing a Triton Inference Server into $VENV (PyTriton, ~450 MB)" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
if ! imports_ok; then
  echo "error: pip finished but pytriton or onnxruntime does not import in $VENV" >&2
  exit 1
fi
cp "$REQUIREMENTS" "$STAMP"
rm -f "$INCOMPLETE"
echo "Triton server ready: $PWD/$VENV/bin/python scripts/triton_serve.py" >&2
