"""Variants that need training (the ``train`` extra): quantization-aware int8
(``onnx-int8-qat``), structured channel pruning (``onnx-channels-<pct>``: that share of each
Conv's channels removed) and reduced input resolution (``onnx-res-<pct>``: that share of the
source's height and width). Each starts from the source ONNX in torch (onnx2torch), fine-tunes
briefly with distillation from the source model and goes back to ONNX, checked.

Fine-tuning never sees the validation frames (the variants are measured on them): it uses the
build's training frames when given, else the calibration frames with the source's answers as
soft targets (label-free self-distillation); the variant's metadata and metrics say which, with
the wall time of every stage. Without the train extra, or for a model onnx2torch or
torch-pruning cannot take, the variant is skipped with the reason (``VariantUnavailable``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controller.optimize.errors import VariantUnavailable
from controller.optimize.onnx_variants import MODEL_FILE, VariantSpec, check_loads, onnx_metadata
from controller.optimize.runners import finalize_variant
from controller.optimize.source import SourceModel
from edgefleet.errors import FailedPrecondition
from edgefleet.modelmeta import Preprocessing, VariantMetadata

if TYPE_CHECKING:
    from controller.training.finetune import FinetuneData

QAT = "onnx-int8-qat"
CHANNELS_PREFIX, RESOLUTION_PREFIX = "onnx-channels-", "onnx-res-"
TRAINING_KEY = "training"  # in the variant's metadata extra and its metrics


def channels_name(percent: int) -> str:
    return f"{CHANNELS_PREFIX}{percent}"


def resolution_name(percent: int) -> str:
    return f"{RESOLUTION_PREFIX}{percent}"


@dataclass(frozen=True)
class TrainedOptions:
    """The trained variants of a build and how hard they fine-tune."""

    qat: str = "auto"  # auto (when post-training int8 misses the budget) | always | never
    qat_weight_bits: int = 8  # 4: the aggressive setting (a 4-bit grid in int8)
    qat_per_channel: bool = True
    channel_percents: tuple[int, ...] = (25, 50)  # share of each Conv's channels removed
    resolution_percents: tuple[int, ...] = (75, 50)  # share of the input's height and width
    finetune_seconds: float = 30.0  # per variant (the epochs are cut to fit)
    finetune_epochs: int = 8
    max_frames: int = 6000  # a seeded draw of the training frames
    learning_rate: float = 2e-3
    training_frames: Path | None = None  # an .npz (x, y) or IDX directory; None = calibration

    def __post_init__(self) -> None:
        if self.qat not in ("auto", "always", "never"):
            raise ValueError(f"qat must be auto, always or never, not {self.qat!r}")


@contextmanager
def _training_errors() -> Iterator[None]:
    """The training core's refusals (missing extra, unconvertible model) become skips."""
    try:
        yield
    except FailedPrecondition as exc:  # TrainingUnavailable, TrainingCancelled
        raise VariantUnavailable(str(exc)) from exc
    except ImportError as exc:
        raise VariantUnavailable(f"training needs the train extra ({exc})") from exc


class _Clock:
    """Wall seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - began, 3)


class TrainingContext:
    """What every trained variant of one build shares: the fine-tuning frames and the source
    model's answers on them (computed once, on first use)."""

    def __init__(self, source: SourceModel, options: TrainedOptions) -> None:
        self.source, self.options = source, options
        self._data: FinetuneData | None = None
        self._teacher: np.ndarray | None = None
        self.teacher_seconds = 0.0

    def data(self) -> FinetuneData:
        from controller.training.data import load_frames
        from controller.training.finetune import FinetuneData

        if self._data is None:
            training = None
            if self.options.training_frames is not None:
                training = load_frames(self.options.training_frames)
                training.check_classes(self.source.signature.num_classes)
            self._data = FinetuneData.of(
                self.source.calibration_x, training, self.options.max_frames
            )
        return self._data

    def teacher(self) -> np.ndarray:
        """The source's logits on the fine-tuning frames (ONNX Runtime, its preprocessing)."""
        from controller.training.teacher import teacher_logits

        if self._teacher is None:
            began = time.monotonic()
            self._teacher = teacher_logits(
                self.source.onnx_path, self.source.preprocessing, self.data().frames.x
            )
            self.teacher_seconds = round(time.monotonic() - began, 3)
        return self._teacher

    def finetune(self, module: Any, x: np.ndarray, clock: _Clock) -> dict[str, Any]:
        from controller.training.finetune import FinetuneConfig, finetune

        o = self.options
        config = FinetuneConfig(
            epochs=o.finetune_epochs,
            max_seconds=o.finetune_seconds,
            max_frames=o.max_frames,
            learning_rate=o.learning_rate,
        )
        with clock.stage("teacher"):
            teacher = self.teacher()
        with clock.stage("fine_tune"):
            _, info = finetune(module, x, teacher, self.data(), config)
        return info


def _input_shape(source: SourceModel, size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The model input without the batch axis, at ``size`` (height, width) when given."""
    pre = source.preprocessing
    h, w = size or tuple(pre.size)
    c = pre.channels
    return (c, h, w) if source.signature.layout == "NCHW" else (h, w, c)


def _finish(
    source: SourceModel,
    out_dir: Path,
    variant: str,
    precision: str,
    clock: _Clock,
    training: dict[str, Any],
    preprocessing: Preprocessing | None = None,
    **extra: Any,
) -> VariantMetadata:
    meta = onnx_metadata(source, variant, precision, **extra)
    if preprocessing is not None:
        shape = (-1, *_input_shape(source, preprocessing.size))
        meta = replace(meta, preprocessing=preprocessing, input_shape=shape)
    training = {**training, "wall_seconds": clock.seconds}
    meta = replace(meta, extra={**meta.extra, TRAINING_KEY: training})
    check_loads(out_dir / MODEL_FILE)
    return finalize_variant(out_dir, meta)


def build_qat(
    source: SourceModel, out_dir: Path, *, ctx: TrainingContext, calibration_limit: int = 128
) -> VariantMetadata:
    """Fake-quant fine-tuning, exported as QDQ int8 (int8 weight initializers)."""
    with _training_errors():
        from controller.training.qat import (
            QuantScheme,
            calibrate,
            export_qdq,
            integer_kernels,
            prepare_qat,
        )
        from controller.training.torch_model import onnx_to_torch

        o, clock = ctx.options, _Clock()
        scheme = QuantScheme(weight_bits=o.qat_weight_bits, per_channel=o.qat_per_channel)
        with clock.stage("convert"):
            module = onnx_to_torch(source.onnx_path)
            layers = prepare_qat(module, scheme)
        with clock.stage("calibrate"):
            calibrate(module, source.calibration_inputs(calibration_limit))
        x = ctx.data().frames.inputs(source.preprocessing)
        info = ctx.finetune(module, x, clock)
        with clock.stage("export"):
            out_dir.mkdir(parents=True, exist_ok=True)
            counts = export_qdq(module, _input_shape(source), out_dir / MODEL_FILE, check_x=x)
            kernels = integer_kernels(out_dir / MODEL_FILE)
        if not kernels:
            raise VariantUnavailable("ONNX Runtime runs the QDQ model without integer kernels")
        return _finish(
            source,
            out_dir,
            QAT,
            "int8",
            clock,
            {**info, "scheme": scheme.describe(), "layers": layers, "qdq": counts},
            reduce_range=scheme.weight_bits <= 7,
            weight_bits=scheme.weight_bits,
            integer_kernels=kernels,
        )


def build_channels(
    source: SourceModel, out_dir: Path, *, ctx: TrainingContext, percent: int
) -> VariantMetadata:
    """``percent`` of every Conv's channels removed, fine-tuned from the unpruned model."""
    with _training_errors():
        from controller.training.prune import prune_channels
        from controller.training.torch_model import export_onnx, onnx_to_torch

        clock = _Clock()
        with clock.stage("convert"):
            module = onnx_to_torch(source.onnx_path)
        with clock.stage("prune"):
            channels = prune_channels(module, _input_shape(source), percent / 100.0)
        info = ctx.finetune(module, ctx.data().frames.inputs(source.preprocessing), clock)
        with clock.stage("export"):
            export_onnx(module, _input_shape(source), out_dir / MODEL_FILE)
        return _finish(
            source, out_dir, channels_name(percent), "fp32", clock, {**info, **channels},
            channel_fraction=percent / 100.0,
        )  # fmt: skip


def build_resolution(
    source: SourceModel, out_dir: Path, *, ctx: TrainingContext, percent: int
) -> VariantMetadata:
    """The model at ``percent`` of the input's height and width, distilled from full size."""
    with _training_errors():
        from controller.training.resolution import check_size_free, reduced_preprocessing
        from controller.training.torch_model import export_onnx, onnx_to_torch

        clock = _Clock()
        pre = reduced_preprocessing(source.preprocessing, percent)
        shape = _input_shape(source, pre.size)
        with clock.stage("convert"):
            module = onnx_to_torch(source.onnx_path)
            check_size_free(source.onnx_path, module, shape, source.signature.num_classes)
        info = ctx.finetune(module, ctx.data().frames.inputs(pre), clock)
        with clock.stage("export"):
            export_onnx(module, shape, out_dir / MODEL_FILE)
        return _finish(
            source, out_dir, resolution_name(percent), "fp32", clock, info, preprocessing=pre,
            resolution=percent / 100.0, source_size=list(source.preprocessing.size),
        )  # fmt: skip


def qat_spec(ctx: TrainingContext, calibration_limit: int = 128) -> VariantSpec:
    return VariantSpec(
        QAT, "onnxruntime", "int8", partial(build_qat, ctx=ctx, calibration_limit=calibration_limit)
    )


def structured_specs(ctx: TrainingContext) -> list[VariantSpec]:
    """The channel-pruned and reduced-resolution variants (QAT is built on demand)."""
    o = ctx.options
    channels = [(channels_name(p), partial(build_channels, ctx=ctx, percent=p))
                for p in o.channel_percents]  # fmt: skip
    resolutions = [(resolution_name(p), partial(build_resolution, ctx=ctx, percent=p))
                   for p in o.resolution_percents]  # fmt: skip
    return [VariantSpec(name, "onnxruntime", "fp32", b) for name, b in channels + resolutions]


def trained_variant_names(options: TrainedOptions | None = None) -> list[str]:
    o = options or TrainedOptions()
    return [
        QAT,
        *(channels_name(p) for p in o.channel_percents),
        *(resolution_name(p) for p in o.resolution_percents),
    ]
