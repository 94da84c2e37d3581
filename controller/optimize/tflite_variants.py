"""LiteRT (TFLite) variants, converted by onnx2tf in a subprocess.

One onnx2tf run yields every LiteRT flavour (fp32, fp16, dynamic range, full int8); the four
variant builders share it. onnx2tf needs the LiteRT toolchain (onnx2tf + TensorFlow, ~1.7 GB,
pinned in scripts/tflite-requirements.txt); without it each builder raises
``VariantUnavailable`` with ``TFLITE_MISSING``.

The toolchain lives in a virtualenv of its own (TensorFlow pins older numpy/protobuf than the
controller), made by scripts/bootstrap.sh through scripts/tflite-venv.sh; the entry point finds
it (controller/config.py) and puts it in ``Onnx2TfConfig.python``. onnx2tf never reaches the
network: calibration data goes in with ``-cind`` and, for 3-channel inputs, the sample-image
file it would otherwise download is written into its working directory from our own
calibration frames.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from controller.optimize.errors import VariantUnavailable
from controller.optimize.onnx_variants import VariantSpec
from controller.optimize.runners import finalize_variant, litert_interpreter_class
from controller.optimize.source import SourceModel, preprocess
from edgefleet.modelmeta import InputQuantization, VariantMetadata

log = logging.getLogger(__name__)

TFLITE_MISSING = (
    "LiteRT toolchain (onnx2tf + TensorFlow) not found: run bash scripts/bootstrap.sh "
    "(or scripts/tflite-venv.sh) and restart the controller, or give it --onnx2tf-python"
)
TFLITE_NOT_REQUESTED = "not requested (--no-tflite)"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
MODEL_FILE = "model.tflite"
# variant name -> (onnx2tf output suffix, precision)
FLAVOURS = {
    "tflite-fp32": ("_float32.tflite", "fp32"),
    "tflite-fp16": ("_float16.tflite", "fp16"),
    "tflite-dynamic-range": ("_dynamic_range_quant.tflite", "int8"),
    "tflite-int8": ("_full_integer_quant.tflite", "int8"),
}


@dataclass(frozen=True)
class Onnx2TfConfig:
    """Where onnx2tf runs. ``python=None`` means this interpreter, if onnx2tf is importable;
    ``available=False`` simulates a machine without the extra."""

    python: str | None = None
    timeout_s: float = 900.0
    calibration_limit: int = 100
    available: bool = True


def onnx2tf_python(config: Onnx2TfConfig) -> str | None:
    """The interpreter that can run onnx2tf, or None when the extra is not installed."""
    if not config.available:
        return None
    if config.python is None:
        return sys.executable if importlib.util.find_spec("onnx2tf") else None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('onnx2tf') is None)"
    try:
        done = subprocess.run([config.python, "-c", probe], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return config.python if done.returncode == 0 else None


def _sample_images(source: SourceModel) -> np.ndarray:
    """20 x 128 x 128 x 3 float32 frames in [0, 1] from the calibration set."""
    from edgefleet.modelmeta import Preprocessing

    frames = source.calibration_x[:20]
    frames = np.concatenate([frames] * (20 // len(frames) + 1))[:20]
    pre = Preprocessing(
        size=(128, 128), channels=3, scale=source.preprocessing.scale, layout="NHWC"
    )
    return preprocess(frames, pre)


def _static_batch_copy(src: Path, dst: Path) -> None:
    """The model with batch 1 and every intermediate shape inferred: onnx2tf guesses layouts
    from shapes and mis-transposes residual adds when they are unknown."""
    import onnx

    from controller.optimize.source import load_onnx

    model = load_onnx(src)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # best effort: onnx2tf runs its own simplifier too
        log.warning("shape inference failed before onnx2tf: %s", exc)
    onnx.save(model, str(dst))


@dataclass
class Onnx2TfConversion:
    """Runs onnx2tf once for a source (lazily, on first use) and hands out its outputs."""

    source: SourceModel
    config: Onnx2TfConfig = field(default_factory=Onnx2TfConfig)
    _outputs: Path | None = None
    _error: str | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def output(self, suffix: str) -> Path:
        if self._outputs is None and self._error is None:
            self._convert()
        if self._error is not None:
            raise VariantUnavailable(self._error)
        assert self._outputs is not None
        found = sorted(self._outputs.glob(f"*{suffix}"))
        if not found:
            raise VariantUnavailable(f"onnx2tf produced no *{suffix} file")
        return found[0]

    def _convert(self) -> None:
        python = onnx2tf_python(self.config)
        if python is None:
            self._error = TFLITE_MISSING
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="edgefleet-onnx2tf-")
        work = Path(self._tmp.name)
        pre = replace(self.source.preprocessing, layout="NHWC")
        calib = preprocess(self.source.calibration_x[: self.config.calibration_limit], pre)
        np.save(work / "calibration.npy", calib)
        if pre.channels == 3:
            np.save(work / SAMPLE_FILE, _sample_images(self.source))
        _static_batch_copy(self.source.onnx_path, work / "source.onnx")
        zeros = json.dumps([[[[0.0] * pre.channels]]])
        ones = json.dumps([[[[1.0] * pre.channels]]])
        cmd = [
            python,
            "-c",
            "from onnx2tf.onnx2tf import main; main()",
            "-i",
            "source.onnx",
            "-o",
            "out",
            "-b",
            "1",
            "-oiqt",
            "-qt",
            "per-channel",
            "-iqd",
            "int8",
            "-oqd",
            "int8",
            "-v",
            "error",
            "-cind",
            self.source.signature.input_name,
            "calibration.npy",
            zeros,
            ones,
        ]
        log.info("converting %s with onnx2tf", self.source.name)
        try:
            done = subprocess.run(
                cmd,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=self.config.timeout_s,
                env=_toolchain_env(python),
            )
        except subprocess.TimeoutExpired:
            self._error = f"onnx2tf timed out after {self.config.timeout_s:.0f} s"
            return
        if done.returncode != 0:
            self._error = f"onnx2tf failed (exit {done.returncode}): {_first_error(done)}"
            return
        self._outputs = work / "out"

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _toolchain_env(python: str) -> dict[str, str]:
    """The child's environment with the toolchain interpreter's directory first on PATH, as if
    its virtualenv were activated: onnx2tf runs the ``onnxsim`` command from PATH to fold the
    graph, and without it converts unfolded graphs wrongly (e.g. EfficientNet's computed Pad
    amounts end up on the channel axis) or fails."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(python).parent), env.get("PATH")) if p)
    return env


def _first_error(done: subprocess.CompletedProcess[str]) -> str:
    """The first line onnx2tf flagged as an error, else its last line of output."""
    lines = [ln.strip() for ln in f"{done.stdout}\n{done.stderr}".splitlines() if ln.strip()]
    flagged = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return ((flagged or lines or ["no output"])[0])[:200]


def _quantization(detail: dict[str, Any]) -> InputQuantization | None:
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating) or not scale:
        return None
    return InputQuantization(scale=float(scale), zero_point=int(zero), dtype=dtype.name)


def build_tflite(
    source: SourceModel, out_dir: Path, *, variant: str, conversion: Onnx2TfConversion
) -> VariantMetadata:
    """Copy one onnx2tf output into ``out_dir`` and describe it (NHWC input, batch 1)."""
    suffix, precision = FLAVOURS[variant]
    produced = conversion.output(suffix)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(produced, out_dir / MODEL_FILE)
    try:
        interpreter = litert_interpreter_class()(model_path=str(out_dir / MODEL_FILE))
        interpreter.allocate_tensors()
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError for unsupported ops
        raise VariantUnavailable(f"LiteRT cannot load it: {str(exc)[:200]}") from exc
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    meta = VariantMetadata(
        model=source.name,
        version=source.version,
        variant=variant,
        variant_id=f"{source.name}:{source.version}:{variant}",
        runtime="litert",
        precision=precision,
        file=MODEL_FILE,
        input_name=str(inp["name"]),
        input_shape=tuple(int(d) for d in inp["shape"]),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_name=str(out["name"]),
        preprocessing=replace(source.preprocessing, layout="NHWC"),
        labels=source.labels,
        input_quantization=_quantization(inp),
        output_quantization=_quantization(out),
        extra={"full_integer": variant == "tflite-int8", "converter": "onnx2tf"},
    )
    return finalize_variant(out_dir, meta)


def tflite_variant_specs(conversion: Onnx2TfConversion) -> list[VariantSpec]:
    specs = []
    for variant, (_, precision) in FLAVOURS.items():

        def build(source: SourceModel, out_dir: Path, _variant: str = variant) -> VariantMetadata:
            return build_tflite(source, out_dir, variant=_variant, conversion=conversion)

        specs.append(VariantSpec(variant, "litert", precision, build))
    return specs
