"""The serving plan of a cloud model: batch or not, chosen from measurements on this host.

Pure: measurements in, plan out (``controller.serving.measure`` takes the measurements).

Batching pays only when one call on a batch of b frames costs clearly less than b calls on
one frame: the throughput gain (per-frame time at batch 1 / per-frame time at batch b, per
interleaved round) must reach ``MIN_GAIN`` at the low end of its measured interval (the noise
model of the build's latency measurement, ``controller.optimize.latency``). When it does, the
batcher runs with no queue delay: it takes the frames already waiting, up to the chosen size,
so a quiet fleet is answered at batch 1 (plus one thread hand-off) and a busy one in batches
that each cost less than as many single calls, so neither throughput nor p95 gets worse. A
delay would add itself to every frame's latency when frames arrive one at a time. When
batching does not pay, the plan is a direct call in the gRPC handler's thread: no batcher, no
hand-off.
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
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
# The former fixed defaults, for operators who set only one of batch size and queue delay.
OPERATOR_BATCH_SIZE = 16
OPERATOR_QUEUE_DELAY_MS = 2.0

PlanSource = Literal["measured", "operator", "pending"]


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
        logs = [math.log(r) for r in self.round_ratios if r > 0]
        pairs = [abs(a - b) for i, a in enumerate(logs) for b in logs[i + 1 :]]
        sigma = sigma_from_pairs(pairs)
        if sigma is None:
            return self.gain, self.gain
        half = INTERVAL_Z * standard_error(sigma, len(logs))
        return self.gain * math.exp(-half), self.gain * math.exp(half)

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
class ServingPlan:
    """``max_batch_size`` 1 = a direct call (no batcher); ``source`` says who chose it."""

    max_batch_size: int
    max_queue_delay_ms: float
    source: PlanSource
    reason: str
    measurements: tuple[BatchMeasurement, ...] = field(default=())

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


def choose_plan(
    measurements: tuple[BatchMeasurement, ...] | list[BatchMeasurement],
    min_gain: float = MIN_GAIN,
    not_measured: str = "",
) -> ServingPlan:
    """The plan the measurements support (see the module doc). ``not_measured`` says why
    larger batch sizes are missing, for the reason text. ValueError without batch 1."""
    ms = tuple(sorted(measurements, key=lambda m: m.batch_size))
    single = next((m for m in ms if m.batch_size == 1), None)
    if single is None:
        raise ValueError("the measurements need batch size 1")
    base = f"batch 1: {single.frames_per_s:.0f} frames/s, p95 {single.p95_ms:.3g} ms"
    tail = f"; {not_measured}" if not_measured else ""
    larger = [m for m in ms if m.batch_size > 1]
    if not larger:
        return ServingPlan(1, 0.0, "measured", f"only batch 1 measured ({base}){tail}", ms)
    paying = [m for m in larger if m.gain_interval[0] >= min_gain]
    if not paying:
        best = max(larger, key=lambda m: m.gain)
        why = (
            f"batching does not pay: best {_figures(best)} batch-1 throughput, "
            f"needs >= {min_gain:g}x beyond the noise ({base}){tail}"
        )
        return ServingPlan(1, 0.0, "measured", why, ms)
    best = max(paying, key=lambda m: m.gain)
    # the smallest size that cannot be told apart from the best: lower latency per batch
    chosen = min((m for m in paying if m.gain >= best.gain_interval[0]), key=lambda m: m.batch_size)
    why = (
        f"batching pays: {_figures(chosen)} batch-1 throughput ({base}); no queue delay, "
        f"batches form from frames already waiting{tail}"
    )
    return ServingPlan(chosen.batch_size, 0.0, "measured", why, ms)
