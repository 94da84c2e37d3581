"""OpenVINO variants: an ONNX file that the agent compiles with OpenVINO's CPU plugin.

The artifact stays one ONNX file (``VariantMetadata.file``), so signing, download and slots
work unchanged; only the metadata's runtime says "openvino".

- ``openvino-fp32``: the fp32-optimized ONNX (standard ops only, portable to OpenVINO).
- ``openvino-bf16``: the same file with precision bf16, compiled with OpenVINO's bf16
  inference precision; only the x86-64-bf16-openvino profile (AVX-512 BF16) takes it.
- ``openvino-int8``: the static QDQ int8 ONNX, whose QuantizeLinear/DequantizeLinear pairs
  OpenVINO turns into int8 kernels. Its weights use the full 8 bits, so like ONNX Runtime's
  QDQ model it is not chosen for a reduce-range profile (controller.optimize.select).

When OpenVINO is not installed on the controller, or cannot compile what was built, the
variant is skipped with the reason (``VariantUnavailable``), never failed.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from controller.optimize.errors import VariantUnavailable
from controller.optimize.onnx_variants import VariantSpec, build_fp32, build_int8_static
from controller.optimize.runners import OpenVinoRunner, finalize_variant, openvino_core
from controller.optimize.source import SourceModel
from edgefleet.modelmeta import VariantMetadata

RUNTIME = "openvino"
OPENVINO_FP32 = "openvino-fp32"
OPENVINO_BF16 = "openvino-bf16"
OPENVINO_INT8 = "openvino-int8"
OPENVINO_VARIANTS = (OPENVINO_FP32, OPENVINO_BF16, OPENVINO_INT8)


def check_compiles(path: Path, input_shape: tuple[int, ...], precision: str = "fp32") -> None:
    """Raise ``VariantUnavailable`` unless OpenVINO compiles ``path`` and runs one frame."""
    try:
        runner = OpenVinoRunner(path, threads=1, precision=precision)
        runner.run(np.zeros((1, *(abs(d) for d in input_shape[1:])), np.float32))
    except VariantUnavailable:
        raise
    except Exception as exc:  # OpenVINO raises its own untyped RuntimeErrors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VariantUnavailable(f"OpenVINO cannot compile it: {first_line[:200]}") from exc


def _for_openvino(
    onnx_meta: VariantMetadata, variant: str, out_dir: Path, precision: str | None = None
) -> VariantMetadata:
    """The ONNX variant's metadata retargeted to OpenVINO, checked and written."""
    meta = replace(
        onnx_meta,
        variant=variant,
        variant_id=f"{onnx_meta.model}:{onnx_meta.version}:{variant}",
        runtime=RUNTIME,
        precision=precision or onnx_meta.precision,
        sha256="",
        size_bytes=0,
        extra={**onnx_meta.extra, "onnx_variant": onnx_meta.variant},
    )
    check_compiles(out_dir / meta.file, meta.input_shape, meta.precision)
    return finalize_variant(out_dir, meta)


def build_openvino_fp32(source: SourceModel, out_dir: Path) -> VariantMetadata:
    openvino_core()  # skip before building anything when OpenVINO is missing
    return _for_openvino(build_fp32(source, out_dir), OPENVINO_FP32, out_dir)


def build_openvino_bf16(source: SourceModel, out_dir: Path) -> VariantMetadata:
    openvino_core()
    return _for_openvino(build_fp32(source, out_dir), OPENVINO_BF16, out_dir, "bf16")


def build_openvino_int8(
    source: SourceModel, out_dir: Path, *, calibration_limit: int = 128
) -> VariantMetadata:
    openvino_core()
    onnx_meta = build_int8_static(
        source, out_dir, reduce_range=False, calibration_limit=calibration_limit
    )
    return _for_openvino(onnx_meta, OPENVINO_INT8, out_dir)


def openvino_variant_specs(*, calibration_limit: int = 128) -> list[VariantSpec]:
    return [
        VariantSpec(OPENVINO_FP32, RUNTIME, "fp32", build_openvino_fp32),
        VariantSpec(OPENVINO_BF16, RUNTIME, "bf16", build_openvino_bf16),
        VariantSpec(
            OPENVINO_INT8,
            RUNTIME,
            "int8",
            partial(build_openvino_int8, calibration_limit=calibration_limit),
        ),
    ]
