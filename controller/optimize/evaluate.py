"""Measure a built variant: size, compressed size, latency against the fp32 baseline, accuracy,
agreement with the source, and calibration (temperature + expected calibration error).

Latency runs are interleaved with the source model (fp32, ONNX Runtime) in the same loop:
on a noisy shared machine the ratio of the two is what means something. The runs are split into
rounds, one ratio per round, so that the spread of the ratios tells selection how far to trust
them. Every round opens its own pair of runtime sessions (ORT sessions or LiteRT interpreters,
alternating which is opened first): two sessions' thread pools share the cores differently every
time they are made (at 2 threads the same model measured 0.8x..1.2x itself from one session pair
to the next), so a measurement on one pair carries that pair's bias whole. With a pair per
round the bias becomes round-to-round spread, which the interval covers and the median of many
rounds averages out. A fast model's rounds are stretched to ``min_round_ms`` each, so that they
are not all taken within one scheduler time slice, and a cheap measurement gets more rounds, up
to ``max_rounds``, while it has taken less than its time budget (``runs`` x
``budget_ms_per_run``): the models that need the most rounds cost the least per round. Sessions
keep ONNX Runtime's default thread spinning, as on the device (see ``measure_latency``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from controller.optimize.latency import Latency
from controller.optimize.runners import OrtRunner, Runner, open_runner
from controller.optimize.source import SourceModel, preprocess
from edgefleet.confidence import confidence_quantiles, validation_histograms
from edgefleet.histograms import CONFIDENCE_BOUNDS
from edgefleet.modelmeta import VariantMetadata

log = logging.getLogger(__name__)

RUNTIME_OVERHEAD_BYTES = {
    "onnxruntime": 40 * 1024 * 1024,
    "litert": 8 * 1024 * 1024,
    "openvino": 104 * 1024 * 1024,  # RSS of import + CPU plugin + one small model (measured)
}
MIN_RUNS_PER_ROUND = 3  # fewer and a round's median is just noise

RunnerFactory = Callable[[], Runner]  # opens a fresh runtime session each call


@dataclass(frozen=True)
class MeasureConfig:
    """How hard to measure. Defaults keep a small-model build well under a minute."""

    warmup: int = 5  # untimed runs of each, after every round's sessions are opened
    runs: int = 25  # timed runs of variant and baseline each, interleaved, at least
    rounds: int = 5  # the runs split into this many rounds (each >= 3 runs): one ratio each
    # A round also lasts at least this long (more runs of a fast model, which cost little).
    min_round_ms: float = 20.0
    # More rounds (each like the last, up to max_rounds) while the measurement has taken less
    # than runs x budget_ms_per_run: 0.5 s per variant and thread count at the defaults, about
    # 15 rounds of a 0.05 ms model, the bare 5 rounds of a 2 ms one.
    max_rounds: int = 30
    budget_ms_per_run: float = 20.0
    thread_counts: tuple[int, ...] = (1, 2)
    max_threads: int | None = None  # cap (default: this machine's cores)
    eval_limit: int | None = None  # validation frames for accuracy; None = all
    ece_bins: int = 15
    zstd_level: int = 19

    def threads_to_measure(self, wanted: tuple[int, ...]) -> tuple[int, ...]:
        cap = self.max_threads or os.cpu_count() or 1
        return tuple(sorted({max(1, min(t, cap)) for t in wanted}))

    def round_sizes(self) -> tuple[int, ...]:
        """``runs`` split as evenly as possible into at most ``rounds`` rounds of at least
        ``MIN_RUNS_PER_ROUND`` runs (one round when there are too few runs): same total cost."""
        runs = max(1, self.runs)
        k = max(1, min(self.rounds, runs // MIN_RUNS_PER_ROUND))
        return tuple(runs // k + (1 if i < runs % k else 0) for i in range(k))

    @property
    def budget_ms(self) -> float:
        """How long a measurement may go on adding rounds past ``round_sizes``."""
        return max(1, self.runs) * self.budget_ms_per_run


@dataclass(frozen=True)
class Evaluation:
    variant: str
    runtime: str
    precision: str
    size_bytes: int
    zstd_bytes: int
    accuracy: float  # top-1 on validation, 0..1
    accuracy_drop_pp: float  # source accuracy minus this, percentage points
    agreement: float  # share of frames with the source's top-1
    temperature: float
    ece: float  # after temperature scaling
    estimated_memory_bytes: int
    latency: dict[int, Latency] = field(default_factory=dict)
    full_integer: bool = False
    reduce_range: bool = False
    # Validation confidence quantiles per metric, after temperature scaling (for the agent).
    confidence_quantiles: dict[str, list[float]] = field(default_factory=dict)
    # Per metric: validation frames and right answers per CONFIDENCE_BOUNDS bucket (drift
    # baseline, controller.monitoring.drift).
    confidence_histogram: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def latency_at(self, threads: int) -> Latency | None:
        """The measurement with the most threads not above ``threads`` (else the fewest)."""
        if not self.latency:
            return None
        below = [t for t in self.latency if t <= threads]
        return self.latency[max(below) if below else min(self.latency)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = {str(t): lat.to_dict() for t, lat in self.latency.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of ``to_dict``; reports stored before latency rounds existed load too."""
        fields = dict(data)
        latency = {
            int(t): Latency.from_dict(v) for t, v in (fields.pop("latency", None) or {}).items()
        }
        return cls(**fields, latency=latency)


@dataclass
class Reference:
    """What the source model answers on validation: the yardstick for every variant."""

    accuracy: float
    predictions: np.ndarray
    activation_bytes: int


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_logits(outputs: np.ndarray) -> np.ndarray:
    """Outputs that are already probabilities (a final softmax) become log-probabilities."""
    rows = outputs.sum(axis=1)
    if outputs.min() >= 0.0 and np.allclose(rows, 1.0, atol=1e-3):
        return np.log(np.clip(outputs, 1e-12, 1.0))
    return outputs


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0, iterations: int = 50
) -> float:
    """The softmax temperature minimizing NLL, by golden-section search over log T."""
    a, b = np.log(lo), np.log(hi)
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2.0))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += abs(correct[in_bin].mean() - conf[in_bin].mean()) * in_bin.mean()
    return float(ece)


def zstd_size(path: Path, level: int = 19) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=level).compress(path.read_bytes()))


def activation_bytes(source: SourceModel) -> int:
    """Rough peak activation memory at batch 1: the two largest float tensors side by side."""
    import onnx

    from controller.optimize.source import load_onnx

    model = load_onnx(source.onnx_path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is best effort; fall back to the input size
        return int(np.prod([abs(d) for d in source.signature.input_shape])) * 4
    sizes = []
    for info in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            sizes.append(int(np.prod(dims)) * 4)
    return sum(sorted(sizes)[-2:]) if sizes else 0


def in_layout(x: np.ndarray, source_layout: str, layout: str) -> np.ndarray:
    if source_layout == layout:
        return x
    axes = (0, 2, 3, 1) if layout == "NHWC" else (0, 3, 1, 2)
    return np.ascontiguousarray(x.transpose(axes))


def reference(source: SourceModel, config: MeasureConfig) -> Reference:
    x = source.validation_inputs()[: config.eval_limit]
    y = source.validation_y[: config.eval_limit]
    predictions = OrtRunner(source.onnx_path).run(x).argmax(axis=1)
    return Reference(
        accuracy=float((predictions == y).mean()),
        predictions=predictions,
        activation_bytes=activation_bytes(source),
    )


def _time_once(runner: Runner, x: np.ndarray) -> float:
    start = time.perf_counter_ns()
    runner.run(x)
    return (time.perf_counter_ns() - start) / 1e6


def _open_pair(
    open_variant: RunnerFactory, open_baseline: RunnerFactory, variant_first: bool
) -> tuple[Runner, Runner]:
    """Fresh sessions of both; which one is created first alternates with ``variant_first``
    (the first one's thread pool starts on an idler machine)."""
    if variant_first:
        variant = open_variant()
        return variant, open_baseline()
    baseline = open_baseline()
    return open_variant(), baseline


def _elapsed_ms(since_ns: int) -> float:
    return (time.perf_counter_ns() - since_ns) / 1e6


def measure_latency(
    open_variant: RunnerFactory,
    open_baseline: RunnerFactory,
    x_variant: np.ndarray,
    x_baseline: np.ndarray,
    threads: int,
    config: MeasureConfig,
) -> Latency:
    """Time variant and baseline in rounds, each round on a new pair of sessions: open both
    (alternating which first), warm both up, then alternate single runs (alternating which goes
    first) for at least the round's runs and ``min_round_ms``. Medians and p95 over all runs,
    plus one variant/baseline ratio of medians per round. After ``round_sizes`` rounds, more
    rounds of the last size while the measurement has taken less than ``budget_ms``.

    Sessions keep the default thread spinning, as the agent runs them. Measured on the fashion
    edge model at 2 threads (median round ratio to fp32 over 12 fresh pairs): int8-static 1.23
    interleaved with spinning, 1.23 in 100 ms blocks (each session alone, as on a device),
    but 1.09 interleaved with spinning off: turning it off makes the ratios wrong, not quieter.
    """
    sizes = config.round_sizes()
    most = max(1, config.max_rounds)
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    i = 0
    began = time.perf_counter_ns()
    while len(ratios) < min(len(sizes), most) or (
        len(ratios) < most and _elapsed_ms(began) < config.budget_ms
    ):
        k = len(ratios)
        size = sizes[min(k, len(sizes) - 1)]
        variant, baseline = _open_pair(open_variant, open_baseline, variant_first=k % 2 == 0)
        for _ in range(config.warmup):
            variant.run(x_variant)
            baseline.run(x_baseline)
        start, round_began = len(ours), time.perf_counter_ns()
        while len(ours) - start < size or _elapsed_ms(round_began) < config.min_round_ms:
            if i % 2:  # alternate who goes first, so neither always runs on a warm cache
                theirs.append(_time_once(baseline, x_baseline))
                ours.append(_time_once(variant, x_variant))
            else:
                ours.append(_time_once(variant, x_variant))
                theirs.append(_time_once(baseline, x_baseline))
            i += 1
        del variant, baseline  # close both sessions (and their thread pools) before the next
        base = max(float(np.median(theirs[start:])), 1e-6)  # a 0 ms reading: clamp to 1 ns
        ratios.append(float(np.median(ours[start:])) / base)
    return Latency(
        threads=threads,
        median_ms=float(np.median(ours)),
        p95_ms=float(np.percentile(ours, 95)),
        baseline_median_ms=float(np.median(theirs)),
        baseline_p95_ms=float(np.percentile(theirs, 95)),
        round_ratios=tuple(ratios),
    )


def validation_inputs_for(source: SourceModel, meta: VariantMetadata) -> np.ndarray:
    """The validation frames as the variant takes them: the source's tensor, or the frames
    preprocessed again when the variant's size differs (a reduced-resolution variant), laid
    out as the source's so ``in_layout`` applies to both."""
    pre = meta.preprocessing
    if tuple(pre.size) == tuple(source.preprocessing.size):
        return source.validation_inputs()
    return preprocess(source.validation_x, replace(pre, layout=source.preprocessing.layout))


def evaluate_variant(
    meta: VariantMetadata,
    variant_dir: Path,
    source: SourceModel,
    ref: Reference,
    config: MeasureConfig,
    thread_counts: tuple[int, ...] = (1,),
) -> Evaluation:
    """Measure one built variant. ``thread_counts`` are the profiles' wanted counts."""
    path = variant_dir / meta.file
    src_layout = source.signature.layout
    inputs = validation_inputs_for(source, meta)
    x = in_layout(inputs[: config.eval_limit], src_layout, meta.preprocessing.layout)
    y = source.validation_y[: config.eval_limit]
    logits = as_logits(open_runner(path, meta.runtime, 1, meta.precision).run(x))
    predictions = logits.argmax(axis=1)
    accuracy = float((predictions == y).mean())
    temperature = fit_temperature(logits, y)
    ece = expected_calibration_error(softmax(logits / temperature), y, config.ece_bins)

    latency: dict[int, Latency] = {}
    one_src = source.validation_inputs()[:1]  # the baseline runs at the source's own size
    one = in_layout(inputs[:1], src_layout, meta.preprocessing.layout)
    for threads in config.threads_to_measure(thread_counts):
        latency[threads] = measure_latency(
            partial(open_runner, path, meta.runtime, threads, meta.precision),
            partial(OrtRunner, source.onnx_path, threads),
            one,
            one_src,
            threads,
            config,
        )

    weights_bytes = meta.size_bytes or path.stat().st_size
    act = ref.activation_bytes // (4 if meta.extra.get("full_integer") else 1)
    memory = RUNTIME_OVERHEAD_BYTES.get(meta.runtime, 0) + 2 * weights_bytes + act
    return Evaluation(
        variant=meta.variant,
        runtime=meta.runtime,
        precision=meta.precision,
        size_bytes=weights_bytes,
        zstd_bytes=zstd_size(path, config.zstd_level),
        accuracy=accuracy,
        accuracy_drop_pp=(ref.accuracy - accuracy) * 100.0,
        agreement=float((predictions == ref.predictions).mean()),
        temperature=temperature,
        ece=ece,
        estimated_memory_bytes=int(memory),
        latency=latency,
        full_integer=bool(meta.extra.get("full_integer", False)),
        reduce_range=bool(meta.extra.get("reduce_range", False)),
        confidence_quantiles=confidence_quantiles(logits, temperature),
        confidence_histogram=validation_histograms(logits, y, CONFIDENCE_BOUNDS, temperature),
    )
