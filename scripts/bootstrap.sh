#!/usr/bin/env bash
# Installs what EdgeFleet needs on a fresh machine: a virtual environment with the project and
# its dev extras, Mosquitto for the broker tests, Fashion-MNIST, and the LiteRT toolchain
# (.venv-tflite, see scripts/tflite-venv.sh). Idempotent; safe to run again, quick when nothing
# changed.
#
# EDGEFLEET_SKIP_LITERT=1 skips the LiteRT toolchain (~1.7 GB): LiteRT variants are then reported
# as skipped and the int8-npu profile, which runs only full-int8 LiteRT, gets no variant. When the
# toolchain is wanted but fails to install, this script fails, saying so.
# EDGEFLEET_SKIP_TRITON=1 skips the Triton server (.venv-triton, scripts/triton-venv.sh, ~450 MB)
# that the Triton cloud-model backend's tests run against; they are then skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Mosquitto (the broker tests) and Fashion-MNIST (the reference workload's
# data, examples/fashion; only its maker script reads the IDX files, the rest use the subsets).
APT_PACKAGES=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  APT_PACKAGES+=(mosquitto)
fi
# Prometheus scrapes /metrics and headless Chromium drives the dashboard in the HTTP tests.
if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  APT_PACKAGES+=(prometheus)
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  APT_PACKAGES+=(chromium chromium-driver)
fi
FASHION_MNIST_DIR="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
if [ ! -f "$FASHION_MNIST_DIR/t10k-images-idx3-ubyte.gz" ]; then
  APT_PACKAGES+=(dataset-fashion-mnist)
fi
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
  echo "installing ${APT_PACKAGES[*]} (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e ".[dev,train]"

case "${EDGEFLEET_SKIP_TRITON:-0}" in
  1 | true | yes)
    echo "EDGEFLEET_SKIP_TRITON=${EDGEFLEET_SKIP_TRITON}: no Triton server installed;" \
      "the Triton backend's tests will be skipped" >&2
    ;;
  *)
    if ! bash scripts/triton-venv.sh; then
      echo "error: the Triton server did not install (see above). Fix that and run again, or" \
        "run with EDGEFLEET_SKIP_TRITON=1 to go without the Triton backend's tests." >&2
      exit 1
    fi
    ;;
esac

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
