"""Population stability index of a confidence distribution against its baseline, pure.

Shared so that the controller (drift scores, alerts) and the agent (its own budget policy)
score a shift the same way, on the same histogram bounds (``CONFIDENCE_BOUNDS``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from edgefleet.histograms import CONFIDENCE_BOUNDS

PSI_EPSILON = 1e-4  # floor of a bucket's share, so an empty bucket does not make PSI infinite
PSI_MAJOR = 0.25  # the usual reading: < 0.1 stable, 0.1-0.25 moderate, >= 0.25 major shift


def counts_of(values: Iterable[float], bounds: Sequence[float] = CONFIDENCE_BOUNDS) -> list[int]:
    """Histogram of raw values (len(bounds) + 1 buckets; a value equal to a bound counts below
    it, as the agent's telemetry histogram does)."""
    out = [0] * (len(bounds) + 1)
    for v in values:
        out[bisect.bisect_left(bounds, float(v))] += 1
    return out


def psi(expected: Sequence[float], observed: Sequence[float]) -> float | None:
    """sum((o - e) * ln(o / e)) over the buckets' shares; None when either is empty."""
    if len(expected) != len(observed):
        raise ValueError("psi needs histograms on the same bounds")
    e_total, o_total = float(sum(expected)), float(sum(observed))
    if e_total <= 0 or o_total <= 0:
        return None
    score = 0.0
    for e, o in zip(expected, observed, strict=True):
        pe = max(e / e_total, PSI_EPSILON)
        po = max(o / o_total, PSI_EPSILON)
        score += (po - pe) * math.log(po / pe)
    return score
