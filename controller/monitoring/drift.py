"""Drift scores, pure: a window's confidence distribution and edge-cloud agreement against
the variant's validation baseline.

Baseline: the build records, per variant, the calibrated confidence of every validation
frame as a histogram on ``CONFIDENCE_BOUNDS`` with how many of each bucket's frames the
variant answered right (``Evaluation.confidence_histogram``). Variants built before that
carry only the 21 validation quantiles: their histogram is read off the quantiles and their
accuracy per bucket is the variant's overall accuracy.

Scores (per device or per cohort, over a telemetry window — a ``Totals``):

- ``psi``: population stability index of the window's confidence histogram against the
  baseline's (0.1: moderate, 0.25: major shift, the usual reading).
- agreement against its validation value: the window's pairs are split the way the agent
  makes them — offloaded pairs are its least confident frames (the lowest ``offload_rate``
  share of the window's histogram), audit pairs the rest — and the baseline's accuracy per
  bucket says what agreement those frames would have had on validation data. Validation
  labels stand in for the cloud's answers there, so the expected value is slightly high
  (by the cloud model's own error rate): the rules compare with a margin.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.services.telemetry_math import Totals, wilson_interval
from edgefleet.drift import counts_of, psi
from edgefleet.histograms import CONFIDENCE_BOUNDS

__all__ = ["Baseline", "DriftScore", "bucket_counts", "counts_of", "drift_score", "psi"]


def bucket_counts(
    buckets: Mapping[float, int], bounds: Sequence[float] = CONFIDENCE_BOUNDS
) -> list[int]:
    """{upper bound: count} (telemetry's form, overflow key inf) as len(bounds)+1 counts."""
    out = [0] * (len(bounds) + 1)
    for upper, count in buckets.items():
        if count:
            out[min(bisect.bisect_left(bounds, upper), len(bounds))] += int(count)
    return out


@dataclass(frozen=True)
class Baseline:
    """A variant's validation confidence distribution on ``bounds`` and its accuracy there."""

    counts: tuple[int, ...]
    correct: tuple[int, ...]
    bounds: tuple[float, ...] = CONFIDENCE_BOUNDS

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.bounds) + 1 or len(self.correct) != len(self.counts):
            raise ValueError("baseline needs len(bounds) + 1 counts and correct counts")
        if sum(self.counts) <= 0:
            raise ValueError("baseline histogram is empty")

    @classmethod
    def from_values(
        cls, confidences: Sequence[float], correct: Sequence[bool], bounds: Sequence[float]
    ) -> Baseline:
        counts = [0] * (len(bounds) + 1)
        right = [0] * (len(bounds) + 1)
        for value, ok in zip(confidences, correct, strict=True):
            i = bisect.bisect_left(bounds, float(value))
            counts[i] += 1
            right[i] += bool(ok)
        return cls(tuple(counts), tuple(right), tuple(bounds))

    @classmethod
    def from_quantiles(
        cls, quantiles: Sequence[float], accuracy: float, n: int = 10_000
    ) -> Baseline:
        """Read a histogram off evenly spaced quantiles (0%..100%): the CDF is linear between
        them. Accuracy per bucket is unknown there: the overall accuracy everywhere."""
        q = [float(v) for v in quantiles]
        if len(q) < 2:
            raise ValueError("need at least two quantiles")
        levels = [i / (len(q) - 1) for i in range(len(q))]
        bounds = CONFIDENCE_BOUNDS

        def cdf(x: float) -> float:
            if x < q[0]:
                return 0.0
            if x >= q[-1]:
                return 1.0
            i = bisect.bisect_right(q, x) - 1
            lo, hi = q[i], q[i + 1]
            step = (x - lo) / (hi - lo) if hi > lo else 1.0
            return levels[i] + (levels[i + 1] - levels[i]) * step

        edges = [cdf(b) for b in bounds]
        shares = [edges[0]] + [b - a for a, b in itertools.pairwise(edges)]
        shares.append(1.0 - edges[-1])
        counts = tuple(max(0, round(s * n)) for s in shares)
        correct = tuple(round(c * accuracy) for c in counts)
        return cls(counts, correct, bounds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(
            tuple(int(c) for c in data["counts"]),
            tuple(int(c) for c in data["correct"]),
            tuple(float(b) for b in data.get("bounds", CONFIDENCE_BOUNDS)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts),
                "correct": list(self.correct)}  # fmt: skip

    def accuracy_by_bucket(self) -> list[float]:
        overall = sum(self.correct) / sum(self.counts)
        return [r / c if c else overall for r, c in zip(self.correct, self.counts, strict=True)]


def split_low(counts: Sequence[int], share: float) -> tuple[list[float], list[float]]:
    """The histogram split into its lowest ``share`` of mass and the rest (one bucket split
    in proportion)."""
    total = float(sum(counts))
    budget = max(0.0, min(1.0, share)) * total
    low, high = [0.0] * len(counts), [0.0] * len(counts)
    for i, c in enumerate(counts):
        take = min(float(c), budget)
        low[i], high[i] = take, c - take
        budget -= take
    return low, high


def expected_agreement(
    baseline: Baseline,
    observed: Sequence[int],
    offload_rate: float,
    offload_pairs: int,
    audit_pairs: int,
) -> float | None:
    """What agreement the window's pairs would have had on validation data (see module)."""
    pairs = offload_pairs + audit_pairs
    if pairs <= 0:
        return None
    counts = observed if sum(observed) > 0 else baseline.counts
    acc = baseline.accuracy_by_bucket()
    low, high = split_low(counts, offload_rate)

    def mean(weights: Sequence[float]) -> float:
        total = sum(weights)
        if total <= 0:
            return sum(a * c for a, c in zip(acc, counts, strict=True)) / max(1, sum(counts))
        return sum(a * w for a, w in zip(acc, weights, strict=True)) / total

    return (offload_pairs * mean(low) + audit_pairs * mean(high)) / pairs


@dataclass(frozen=True)
class DriftScore:
    """Drift evidence of one device or cohort over one window (None where there is no data)."""

    frames: int
    confidence_frames: int  # frames in the window's confidence histogram
    psi: float | None
    agreement: float | None
    agreement_low: float  # 95% Wilson interval of the agreement
    agreement_high: float
    agreement_pairs: int
    expected_agreement: float | None

    @property
    def agreement_drop(self) -> float | None:
        """Expected minus observed agreement (positive: worse than on validation)."""
        if self.agreement is None or self.expected_agreement is None:
            return None
        return self.expected_agreement - self.agreement

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "confidence_frames": self.confidence_frames,
            "psi": _round(self.psi),
            "agreement": _round(self.agreement),
            "agreement_low": _round(self.agreement_low),
            "agreement_high": _round(self.agreement_high),
            "agreement_pairs": self.agreement_pairs,
            "expected_agreement": _round(self.expected_agreement),
            "agreement_drop": _round(self.agreement_drop),
        }


def drift_score(baseline: Baseline | None, t: Totals) -> DriftScore:
    observed = bucket_counts(t.confidence, baseline.bounds if baseline else CONFIDENCE_BOUNDS)
    pairs = t.offload_pairs + t.audit_pairs
    agreed = t.offload_agreed + t.audit_agreed
    low, high = wilson_interval(agreed, pairs)
    expected = None
    score = None
    if baseline is not None:
        score = psi(baseline.counts, observed)
        offload_rate = t.offloaded / t.frames if t.frames else 0.0
        expected = expected_agreement(
            baseline, observed, offload_rate, t.offload_pairs, t.audit_pairs
        )
    return DriftScore(
        frames=t.frames,
        confidence_frames=sum(observed),
        psi=score,
        agreement=agreed / pairs if pairs else None,
        agreement_low=low,
        agreement_high=high,
        agreement_pairs=pairs,
        expected_agreement=expected,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
