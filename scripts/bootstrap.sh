#!/usr/bin/env bash
# Installs what EdgeFleet needs on a fresh machine: a virtual environment with the project and
# its dev extras, Mosquitto for the broker tests, and the LiteRT toolchain (.venv-tflite, see
# scripts/tflite-venv.sh). Idempotent; safe to run again, and quick when nothing changed.
#
# EDGEFLEET_SKIP_LITERT=1 skips the LiteRT toolchain (~1.7 GB): LiteRT variants are then reported
# as skipped and the int8-npu profile, which runs only full-int8 LiteRT, gets no variant. When the
# toolchain is wanted but fails to install, this script fails, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq mosquitto >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e ".[dev]"

case "${EDGEFLEET_SKIP_LITERT:-0}" in
  1 | true | yes)
    echo "EDGEFLEET_SKIP_LITERT=${EDGEFLEET_SKIP_LITERT}: LiteRT toolchain not installed;" \
      "LiteRT variants will be skipped (int8-npu gets none)" >&2
    ;;
  *)
    if ! bash scripts/tflite-venv.sh; then
      echo "error: the LiteRT toolchain did not install (see above). Fix that and run again, or" \
        "run with EDGEFLEET_SKIP_LITERT=1 to go without LiteRT variants." >&2
      exit 1
    fi
    ;;
esac
