"""The serving plan of a cloud model: batch or not, chosen from measurements on this host.

Pure: measurements in, plan out (``controller.serving.measure`` takes the measurements).

Two measurements, both in interleaved rounds with the noise model of the build's latency
measurement (``controller.optimize.latency``: an interval per ratio from the rounds' spread):

1. The model alone, per batch size: the gain is per-frame time at batch 1 / at batch b. It
   must reach ``MIN_GAIN`` at the low end of its interval, or batching cannot pay.
2. Only then, the serving path under load: concurrent callers through the batching predictor
   as served (at the size from 1) against the same callers calling the model directly, as
   gRPC handler threads do. Direct calls already overlap on the cores, so a model that gains
   alone can still lose here. The batching predictor is a direct call for any frame that does
   not wait (controller.serving.combining), so here it only has to not lose: batching is
   chosen unless its frames/s fall below direct calls' (median of the rounds' ratios below
   ``MIN_LOAD_GAIN``) or its p95 rises beyond ``MAX_LOAD_P95_RATIO``. (Asking it to win beyond
   the noise of a busy 2-core host chose direct calls where batching measured 1.7x faster
   with 32 device processes: bench_offload, 2026-12-03.)

A measured batch size is served with no queue delay, batches formed in the gRPC handlers'
own threads from the frames already waiting (controller.serving.combining): a lone frame runs
at once, and batches grow only as far as load makes frames wait. Otherwise the plan is a
direct call in the handler's thread. The operator's fixed batching (a queue delay) runs the
batcher thread (controller.serving.batcher).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.optimize.latency import INTERVAL_Z, sigma_from_pairs, standard_error

# Below this gain (at the low end of the interval) the hand-off to the batcher thread and
# the wait behind a running batch can eat what batching saves.
MIN_GAIN = 1.2
MIN_LOAD_GAIN = 1.0  # batching's frames/s over direct calls', under load (median)
MAX_LOAD_P95_RATIO = 1.1  # batching's p95 over direct calls' (median)
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
# The former fixed defaults, for operators who set only one of batch size and queue delay.
OPERATOR_BATCH_SIZE = 16
OPERATOR_QUEUE_DELAY_MS = 2.0

PlanSource = Literal["measured", "operator", "pending"]


def ratio_interval(ratios: tuple[float, ...]) -> tuple[float, float, float]:
    """(median, low, high) of per-round ratios: median +- ``INTERVAL_Z`` standard errors of
    the rounds, in log space (low = high = median below 2 rounds)."""
    if not ratios:
        return 1.0, 1.0, 1.0
    mid = float(statistics.median(ratios))
    logs = [math.log(r) for r in ratios if r > 0]
    pairs = [abs(a - b) for i, a in enumerate(logs) for b in logs[i + 1 :]]
    sigma = sigma_from_pairs(pairs)
    if sigma is None:
        return mid, mid, mid
    half = INTERVAL_Z * standard_error(sigma, len(logs))
    return mid, mid * math.exp(-half), mid * math.exp(half)


@dataclass(frozen=True)
class BatchMeasurement:
    """Calls of ``batch_size`` frames: ``median_ms``/``p95_ms`` per call over every timed run;
    ``round_ratios`` per interleaved round: per-frame time at this size / at batch 1."""

    batch_size: int
    median_ms: float
    p95_ms: float
    round_ratios: tuple[float, ...] = ()

    @property
    def frames_per_s(self) -> float:
        return self.batch_size * 1000.0 / self.median_ms if self.median_ms > 0 else 0.0

    @property
    def gain(self) -> float:
        """Throughput over batch 1's: the median of the rounds (1.0 without rounds)."""
        return 1.0 / statistics.median(self.round_ratios) if self.round_ratios else 1.0

    @property
    def gain_interval(self) -> tuple[float, float]:
        """``gain`` +- ``INTERVAL_Z`` standard errors of its rounds (a point below 2 rounds)."""
        _, lo, hi = ratio_interval(self.round_ratios)
        return 1.0 / hi, 1.0 / lo

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.gain_interval
        return {
            "batch_size": self.batch_size,
            "median_ms": self.median_ms,
            "p95_ms": self.p95_ms,
            "frames_per_s": self.frames_per_s,
            "gain": self.gain,
            "gain_lo": lo,
            "gain_hi": hi,
            "rounds": len(self.round_ratios),
        }


@dataclass(frozen=True)
class LoadRound:
    """One round of the same concurrent callers, direct calls and through the batcher."""

    direct_fps: float
    direct_p95_ms: float
    batched_fps: float
    batched_p95_ms: float


@dataclass(frozen=True)
class LoadComparison:
    batch_size: int
    clients: int
    rounds: tuple[LoadRound, ...]

    @property
    def gain(self) -> tuple[float, float, float]:
        """Batched / direct frames/s: (median, low, high) over the rounds."""
        return ratio_interval(
            tuple(r.batched_fps / r.direct_fps for r in self.rounds if r.direct_fps > 0)
        )

    @property
    def p95_ratio(self) -> float:
        """Batched / direct p95, the median over the rounds."""
        ratios = [r.batched_p95_ms / r.direct_p95_ms for r in self.rounds if r.direct_p95_ms]
        return float(statistics.median(ratios)) if ratios else math.inf

    def text(self) -> str:
        mid, lo, hi = self.gain
        direct = statistics.median(r.direct_fps for r in self.rounds)
        batched = statistics.median(r.batched_fps for r in self.rounds)
        return (
            f"{self.clients} concurrent callers: batcher (batch <= {self.batch_size}) "
            f"{batched:.0f} frames/s vs direct calls {direct:.0f}, {mid:.2f}x "
            f"[{lo:.2f}..{hi:.2f}], p95 {self.p95_ratio:.2f}x"
        )

    def to_dict(self) -> dict[str, Any]:
        mid, lo, hi = self.gain
        return {
            "batch_size": self.batch_size,
            "clients": self.clients,
            "gain": mid,
            "gain_lo": lo,
            "gain_hi": hi,
            "p95_ratio": self.p95_ratio,
            "rounds": [vars(r) for r in self.rounds],
        }


@dataclass(frozen=True)
class ServingPlan:
    """``max_batch_size`` 1 = a direct call (no batcher); ``source`` says who chose it."""

    max_batch_size: int
    max_queue_delay_ms: float
    source: PlanSource
    reason: str
    measurements: tuple[BatchMeasurement, ...] = field(default=())
    load: LoadComparison | None = None  # the serving path under load, when it was tested

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 1

    def summary(self) -> str:
        """One line, e.g. ``batch <= 8, no queue delay (measured)``."""
        if not self.batched:
            how = "direct call, batch 1"
        else:
            delay = (
                f"queue delay {self.max_queue_delay_ms:g} ms"
                if self.max_queue_delay_ms
                else "no queue delay"
            )
            how = f"batch <= {self.max_batch_size}, {delay}"
        return f"{how} ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "batched": self.batched,
            "source": self.source,
            "reason": self.reason,
            "summary": self.summary(),
            "measurements": [m.to_dict() for m in self.measurements],
            "load": self.load.to_dict() if self.load is not None else None,
        }


def pending_plan() -> ServingPlan:
    """What a model loaded on first use serves with until its measurement is done."""
    return ServingPlan(1, 0.0, "pending", "measuring batch sizes; a direct call meanwhile")


def operator_plan(batch_size: int | None, queue_delay_ms: float | None) -> ServingPlan:
    """The operator's fixed batching (``--offload-max-batch`` / ``?batch=``); a part left
    unset takes the former fixed default (16 frames, 2 ms)."""
    size = OPERATOR_BATCH_SIZE if batch_size is None else batch_size
    delay = OPERATOR_QUEUE_DELAY_MS if queue_delay_ms is None else queue_delay_ms
    if size < 1 or delay < 0:
        raise ValueError(f"batch size must be >= 1 and queue delay >= 0, not {size}, {delay}")
    if size == 1:
        delay = 0.0  # nothing to wait for
    return ServingPlan(size, delay, "operator", "set by the operator (not measured)")


def _figures(m: BatchMeasurement) -> str:
    lo, hi = m.gain_interval
    gain = f"{m.gain:.2f}x [{lo:.2f}..{hi:.2f}]"
    return f"batch {m.batch_size}: {m.frames_per_s:.0f} frames/s, {gain}"


def best_batch(
    measurements: tuple[BatchMeasurement, ...] | list[BatchMeasurement],
    min_gain: float = MIN_GAIN,
) -> BatchMeasurement | None:
    """Measurement 1: the smallest batch size that gains at least ``min_gain`` beyond the
    noise and cannot be told apart from the best one (None: batching cannot pay)."""
    paying = [m for m in measurements if m.batch_size > 1 and m.gain_interval[0] >= min_gain]
    if not paying:
        return None
    best = max(paying, key=lambda m: m.gain)
    return min((m for m in paying if m.gain >= best.gain_interval[0]), key=lambda m: m.batch_size)


def choose_plan(
    measurements: tuple[BatchMeasurement, ...] | list[BatchMeasurement],
    load: LoadComparison | None = None,
    not_measured: str = "",
    min_gain: float = MIN_GAIN,
    min_load_gain: float = MIN_LOAD_GAIN,
) -> ServingPlan:
    """The plan the measurements support (see the module doc). ``load`` is measurement 2 at
    ``best_batch``'s size (None: not run, and then no batcher). ``not_measured`` says why
    larger batch sizes are missing. ValueError without batch 1."""
    ms = tuple(sorted(measurements, key=lambda m: m.batch_size))
    single = next((m for m in ms if m.batch_size == 1), None)
    if single is None:
        raise ValueError("the measurements need batch size 1")
    base = f"batch 1: {single.frames_per_s:.0f} frames/s, p95 {single.p95_ms:.3g} ms"
    tail = f"; {not_measured}" if not_measured else ""
    larger = [m for m in ms if m.batch_size > 1]
    if not larger:
        return ServingPlan(1, 0.0, "measured", f"only batch 1 measured ({base}){tail}", ms)
    chosen = best_batch(ms, min_gain)
    if chosen is None:
        top = max(larger, key=lambda m: m.gain)
        why = (
            f"batching does not pay: best {_figures(top)} batch-1 throughput, "
            f"needs >= {min_gain:g}x beyond the noise ({base}){tail}"
        )
        return ServingPlan(1, 0.0, "measured", why, ms)
    model_gain = f"the model gains alone ({_figures(chosen)} batch-1 throughput; {base})"
    if load is None or load.batch_size != chosen.batch_size:
        why = f"{model_gain}, but the batcher was not tested under load{tail}"
        return ServingPlan(1, 0.0, "measured", why, ms, load)
    mid, _, _ = load.gain
    if mid < min_load_gain or load.p95_ratio > MAX_LOAD_P95_RATIO:
        why = (
            f"the batcher does not pay under load: {load.text()} (needs >= {min_load_gain:g}x "
            f"at p95 <= {MAX_LOAD_P95_RATIO:g}x), though {model_gain}{tail}"
        )
        return ServingPlan(1, 0.0, "measured", why, ms, load)
    why = (
        f"batching pays: {load.text()}; {model_gain}; no queue delay, batches form in the "
        f"handlers' threads from frames already waiting{tail}"
    )
    return ServingPlan(chosen.batch_size, 0.0, "measured", why, ms, load)
