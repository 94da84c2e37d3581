#!/usr/bin/env bash
# The LiteRT (TFLite) toolchain: onnx2tf + TensorFlow (~1.7 GB) in a virtualenv of its own,
# .venv-tflite. TensorFlow pins NumPy 1.x and protobuf < 6, which clash with the controller's own
# environment, so the controller runs onnx2tf there as a subprocess and finds
# .venv-tflite/bin/python by itself (controller/config.py: discover_onnx2tf).
# scripts/bootstrap.sh runs this script; EDGEFLEET_SKIP_LITERT=1 there skips it.
#
# Idempotent and quick when nothing changed: a stamp file in the virtualenv records the pinned
# set it holds (scripts/tflite-requirements.txt); when it matches and the toolchain imports, no
# pip runs. While installing, a marker file says the virtualenv is incomplete, and the controller
# ignores a virtualenv that has it, so an interrupted install never looks usable. A failed install
# exits non-zero; a virtualenv this run created is removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-tflite
REQUIREMENTS=scripts/tflite-requirements.txt
STAMP="$VENV/.edgefleet-requirements.txt"
INCOMPLETE="$VENV/.edgefleet-incomplete" # the name controller/config.py checks

imports_ok() {
  "$VENV/bin/python" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert")))' \
    2>/dev/null
}

if [ -x "$VENV/bin/python" ] && [ ! -e "$INCOMPLETE" ] && cmp -s "$REQUIREMENTS" "$STAMP" \
  && imports_ok; then
  echo "LiteRT toolchain up to date: $PWD/$VENV/bin/python" >&2
  exit 0
fi

created=0
finish() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    if [ "$created" = 1 ]; then
      rm -rf "$VENV"
      echo "LiteRT toolchain: install failed (exit $rc); removed the new $VENV" >&2
    elif [ -e "$INCOMPLETE" ]; then
      echo "LiteRT toolchain: install failed (exit $rc); $VENV is marked incomplete" \
        "and will not be used until this script succeeds" >&2
    fi
  fi
}
trap finish EXIT

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
    echo "error: TensorFlow 2.19 has wheels for Python 3.9 to 3.12, not for $PYTHON" \
      "($("$PYTHON" -V 2>&1)); run with PYTHON=python3.12 (or 3.9-3.11)" >&2
    exit 1
  fi
  created=1
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
: >"$INCOMPLETE"
rm -f "$STAMP"
echo "installing the LiteRT toolchain into $VENV (onnx2tf + TensorFlow, ~1.7 GB)" >&2
if [ "$created" = 1 ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
if ! imports_ok; then
  echo "error: pip finished but onnx2tf, tensorflow, tf_keras or ai_edge_litert does not import" >&2
  exit 1
fi
cp "$REQUIREMENTS" "$STAMP"
rm -f "$INCOMPLETE"
echo "LiteRT toolchain ready: $PWD/$VENV/bin/python (edgefleet controller serve finds it)" >&2
