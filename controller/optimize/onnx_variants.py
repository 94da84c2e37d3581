"""ONNX Runtime variant builders: each takes the source and a directory, writes one model file
plus ``variant.json`` there and returns the variant's metadata.

A builder raises ``VariantUnavailable`` when ONNX Runtime cannot load what it produced (an op
without a CPU kernel, say); the pipeline records the reason and goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from controller.optimize.errors import VariantUnavailable
from controller.optimize.runners import finalize_variant, ort_session
from controller.optimize.source import SourceModel, load_onnx
from edgefleet.modelmeta import VariantMetadata

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1}  # op -> index of its weight input
QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
PRUNE_MIN_FAN_IN = 32

Builder = Callable[[SourceModel, Path], VariantMetadata]


@dataclass(frozen=True)
class VariantSpec:
    """A variant the pipeline can build: name, runtime, precision and its builder."""

    name: str
    runtime: str
    precision: str
    build: Builder


def onnx_metadata(
    source: SourceModel, variant: str, precision: str, **extra: Any
) -> VariantMetadata:
    sig = source.signature
    return VariantMetadata(
        model=source.name,
        version=source.version,
        variant=variant,
        variant_id=f"{source.name}:{source.version}:{variant}",
        runtime="onnxruntime",
        precision=precision,
        file=MODEL_FILE,
        input_name=sig.input_name,
        input_shape=sig.input_shape,
        input_dtype="float32",
        output_name=sig.output_name,
        preprocessing=source.preprocessing,
        labels=source.labels,
        extra=dict(extra),
    )


def check_loads(path: Path) -> None:
    """Raise ``VariantUnavailable`` unless ONNX Runtime (CPU) can create a session for ``path``."""
    try:
        ort_session(path, threads=1)
    except Exception as exc:  # onnxruntime raises its own untyped Fail/NotImplemented errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VariantUnavailable(f"onnxruntime cannot load it: {first_line[:200]}") from exc


def _finish(out_dir: Path, meta: VariantMetadata) -> VariantMetadata:
    check_loads(out_dir / meta.file)
    return finalize_variant(out_dir, meta)


def build_fp32(source: SourceModel, out_dir: Path, *, level: str = "basic") -> VariantMetadata:
    """Offline graph optimization. ``basic`` keeps standard ONNX ops (portable to every
    execution provider); ``extended`` fuses into CPU-specific contrib ops."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = levels[level]
    opts.optimized_model_filepath = str(out_dir / MODEL_FILE)
    opts.log_severity_level = 3
    ort.InferenceSession(str(source.onnx_path), opts, providers=["CPUExecutionProvider"])
    return _finish(out_dir, onnx_metadata(source, "onnx-fp32", "fp32", optimization=level))


def build_fp16(source: SourceModel, out_dir: Path) -> VariantMetadata:
    """Weights and compute in float16, float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out_dir.mkdir(parents=True, exist_ok=True)
    model = convert_float_to_float16(load_onnx(source.onnx_path), keep_io_types=True)
    onnx.save(model, str(out_dir / MODEL_FILE))
    return _finish(out_dir, onnx_metadata(source, "onnx-fp16", "fp16"))


def build_int8_dynamic(
    source: SourceModel, out_dir: Path, *, reduce_range: bool = True
) -> VariantMetadata:
    """Weights int8, activations quantized at run time (ConvInteger/MatMulInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    # ORT's CPU ConvInteger only has a uint8 x uint8 kernel.
    quantize_dynamic(
        source.onnx_path,
        out_dir / MODEL_FILE,
        reduce_range=reduce_range,
        weight_type=QuantType.QUInt8,
    )
    meta = onnx_metadata(source, "onnx-int8-dynamic", "int8", reduce_range=reduce_range)
    return _finish(out_dir, meta)


class _CalibrationReader:
    """Feeds calibration tensors one at a time (an onnxruntime CalibrationDataReader)."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        self._batches = iter([{input_name: data[i : i + 1]} for i in range(len(data))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _named_copy(source: SourceModel, work: Path) -> tuple[Path, list[str]]:
    """The source with every node named (quantizer exclusions go by name) and the names of
    its quantizable nodes in graph order."""
    model = load_onnx(source.onnx_path)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    path = work / "named.onnx"
    onnx.save(model, str(path))
    return path, [n.name for n in model.graph.node if n.op_type in QUANTIZABLE_OPS]


def _quantize_static(
    source: SourceModel,
    model_in: Path,
    model_out: Path,
    *,
    reduce_range: bool,
    calibration_limit: int,
    exclude: Sequence[str] = (),
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _CalibrationReader(
        source.signature.input_name, source.calibration_inputs(calibration_limit)
    )
    quantize_static(
        model_in,
        model_out,
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude) or None,
        calibrate_method=CalibrationMethod.MinMax,
    )


def build_int8_static(
    source: SourceModel, out_dir: Path, *, reduce_range: bool = False, calibration_limit: int = 128
) -> VariantMetadata:
    """QDQ int8 (u8 activations, s8 per-channel weights) calibrated with MinMax."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _quantize_static(
        source,
        source.onnx_path,
        out_dir / MODEL_FILE,
        reduce_range=reduce_range,
        calibration_limit=calibration_limit,
    )
    name = "onnx-int8-static-rr" if reduce_range else "onnx-int8-static"
    return _finish(out_dir, onnx_metadata(source, name, "int8", reduce_range=reduce_range))


def _top1_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    from controller.optimize.runners import OrtRunner

    logits = OrtRunner(path).run(x)
    return float((logits.argmax(axis=1) == y).mean()), logits


def build_int8_mixed(
    source: SourceModel,
    out_dir: Path,
    *,
    reduce_range: bool = False,
    budget_pp: float = 1.0,
    max_probes: int = 6,
    max_excluded: int = 3,
    eval_limit: int = 256,
    calibration_limit: int = 64,
) -> VariantMetadata:
    """Int8 QDQ with the layers most sensitive to quantization kept in float.

    Sensitivity is measured, cheaply: each of at most ``max_probes`` candidate layers (all of
    them for small models, else the first and last ones, where quantization hurts most) is
    left in float in turn and the output error against the source is measured on
    ``eval_limit`` validation frames. The most sensitive layers are then kept in float one by
    one until top-1 accuracy is within ``budget_pp`` of the source (or ``max_excluded`` is hit).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "probes"
    work.mkdir(exist_ok=True)
    named, layers = _named_copy(source, work)
    x = source.validation_inputs()[:eval_limit]
    y = source.validation_y[:eval_limit]
    ref_acc, ref_logits = _top1_accuracy(named, x, y)
    if len(layers) <= max_probes:
        candidates = layers
    else:
        head = (max_probes + 1) // 2
        candidates = layers[:head] + layers[len(layers) - (max_probes - head) :]

    def quantize(exclude: Sequence[str], path: Path) -> tuple[float, float]:
        _quantize_static(
            source,
            named,
            path,
            reduce_range=reduce_range,
            calibration_limit=calibration_limit,
            exclude=exclude,
        )
        acc, logits = _top1_accuracy(path, x, y)
        return acc, float(np.mean((logits - ref_logits) ** 2))

    errors = {layer: quantize([layer], work / "probe.onnx")[1] for layer in candidates}
    ranked = sorted(candidates, key=lambda layer: errors[layer])
    excluded: list[str] = []
    acc = ref_acc
    for layer in ranked[:max_excluded]:
        excluded.append(layer)
        acc, _ = quantize(excluded, out_dir / MODEL_FILE)
        if (ref_acc - acc) * 100.0 <= budget_pp:
            break
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()
    log.info(
        "mixed int8 for %s keeps %s in float (accuracy %.4f vs %.4f)",
        source.name,
        excluded,
        acc,
        ref_acc,
    )
    meta = onnx_metadata(
        source,
        "onnx-int8-mixed",
        "mixed",
        reduce_range=reduce_range,
        float_nodes=excluded,
        probe_errors=errors,
    )
    return _finish(out_dir, meta)


def _weight_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    inits = {init.name: init for init in model.graph.initializer}
    found: dict[str, onnx.TensorProto] = {}
    for node in model.graph.node:
        idx = WEIGHT_OPS.get(node.op_type)
        if idx is not None and len(node.input) > idx and node.input[idx] in inits:
            found[node.input[idx]] = inits[node.input[idx]]
    return list(found.values())


def _rewrite_weights(
    source: SourceModel,
    out_dir: Path,
    transform: Callable[[np.ndarray], np.ndarray],
    min_fan_in: int = 1,
) -> int:
    """Apply ``transform`` to every float weight tensor with at least ``min_fan_in`` weights
    per output channel; return how many tensors were changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_onnx(source.onnx_path)
    changed = 0
    for init in _weight_initializers(model):
        weights = numpy_helper.to_array(init)
        if weights.dtype != np.float32 or int(np.prod(weights.shape[1:])) < min_fan_in:
            continue
        init.CopyFrom(numpy_helper.from_array(transform(weights).astype(np.float32), init.name))
        changed += 1
    onnx.save(model, str(out_dir / MODEL_FILE))
    return changed


def prune_magnitude(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the ``sparsity`` fraction of weights with the smallest magnitude."""
    k = int(weights.size * sparsity)
    if k == 0:
        return weights.copy()
    threshold = np.partition(np.abs(weights).ravel(), k - 1)[k - 1]
    return np.where(np.abs(weights) <= threshold, 0.0, weights).astype(weights.dtype)


def cluster_kmeans(weights: np.ndarray, clusters: int, iterations: int = 8) -> np.ndarray:
    """Replace every weight by the nearest of ``clusters`` shared values (1-D k-means)."""
    flat = weights.ravel().astype(np.float64)
    if flat.size <= clusters:
        return weights.copy()
    centroids = np.unique(np.quantile(flat, np.linspace(0.0, 1.0, clusters)))
    for _ in range(iterations):
        bounds = (centroids[1:] + centroids[:-1]) / 2.0
        assign = np.searchsorted(bounds, flat)
        sums = np.bincount(assign, weights=flat, minlength=len(centroids))
        counts = np.bincount(assign, minlength=len(centroids))
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        centroids.sort()
    assign = np.searchsorted((centroids[1:] + centroids[:-1]) / 2.0, flat)
    return centroids[assign].reshape(weights.shape).astype(weights.dtype)


def build_pruned(source: SourceModel, out_dir: Path, *, percent: int) -> VariantMetadata:
    """Unstructured magnitude pruning of Conv/Gemm/MatMul weights, stored fp32.

    Tensors with fewer than ``PRUNE_MIN_FAN_IN`` weights per output (depthwise kernels, an
    image's first conv) are left dense: a 3x3 kernel with half its taps gone is no kernel.
    """
    pruned = _rewrite_weights(
        source, out_dir, partial(prune_magnitude, sparsity=percent / 100.0), PRUNE_MIN_FAN_IN
    )
    meta = onnx_metadata(
        source, f"onnx-pruned-{percent}", "fp32", sparsity=percent / 100.0, pruned_tensors=pruned
    )
    return _finish(out_dir, meta)


def build_clustered(source: SourceModel, out_dir: Path, *, clusters: int) -> VariantMetadata:
    """Per-tensor k-means weight clustering, stored fp32 (the win is compressed size)."""
    _rewrite_weights(source, out_dir, partial(cluster_kmeans, clusters=clusters))
    meta = onnx_metadata(source, f"onnx-clustered-{clusters}", "fp32", clusters=clusters)
    return _finish(out_dir, meta)


def onnx_variant_specs(
    *,
    static_reduce_range: Sequence[bool] = (False, True),
    prune_percents: Sequence[int] = (50, 75, 90),
    cluster_counts: Sequence[int] = (16, 32, 64),
    calibration_limit: int = 128,
) -> list[VariantSpec]:
    """Every ONNX variant except mixed int8, which the pipeline builds only when needed."""
    specs = [
        VariantSpec("onnx-fp32", "onnxruntime", "fp32", build_fp32),
        VariantSpec("onnx-fp16", "onnxruntime", "fp16", build_fp16),
        VariantSpec("onnx-int8-dynamic", "onnxruntime", "int8", build_int8_dynamic),
    ]
    for rr in static_reduce_range:
        name = "onnx-int8-static-rr" if rr else "onnx-int8-static"
        specs.append(
            VariantSpec(
                name,
                "onnxruntime",
                "int8",
                partial(build_int8_static, reduce_range=rr, calibration_limit=calibration_limit),
            )
        )
    specs += [
        VariantSpec(f"onnx-pruned-{p}", "onnxruntime", "fp32", partial(build_pruned, percent=p))
        for p in prune_percents
    ]
    specs += [
        VariantSpec(
            f"onnx-clustered-{k}", "onnxruntime", "fp32", partial(build_clustered, clusters=k)
        )
        for k in cluster_counts
    ]
    return specs
