#!/usr/bin/env bash
# LiteRT/TFLite variants need onnx2tf + TensorFlow (~1.7 GB). TensorFlow pins NumPy 1.x and
# protobuf 4, which clash with the controller's own environment, so they get a virtualenv of
# their own; the controller runs onnx2tf there as a subprocess:
#   bash scripts/tflite-venv.sh && edgefleet controller serve --onnx2tf-python .venv-tflite/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv-tflite/bin/python ] || "$PYTHON" -m venv .venv-tflite
.venv-tflite/bin/pip install -q --upgrade pip
# Versions known to convert the reference models (recorded when the pipeline was built).
.venv-tflite/bin/pip install -q "onnx2tf==1.29.24" "tensorflow==2.19.0" "tf_keras==2.19.0" \
  "onnx==1.19.1" "onnx_graphsurgeon==0.5.8" "onnxsim==0.4.36" "sng4onnx==2.0.1" \
  "onnxruntime==1.23.0" "ai-edge-litert==2.1.0" "numpy==1.26.4" "protobuf==4.25.5" "psutil"
echo "ready: edgefleet controller serve --onnx2tf-python $(pwd)/.venv-tflite/bin/python"
