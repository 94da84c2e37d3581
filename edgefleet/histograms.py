"""Histogram bucket bounds both sides agree on (the agent fills them, the controller reads
percentiles from them).

Latency bounds are log-spaced, ten per decade from 10 µs to 10 s: every bucket spans a
factor of about 1.26, so a percentile read from a bucket is within that factor of the
truth whether the model answers in 0.02 ms or in 200 ms. A fixed linear-ish ladder starting
at 0.5 ms would put a 0.03 ms model in its first bucket and report a p50 ten times too slow.

Wire compatibility: every ``Histogram`` message carries its own ``bounds``, so a report
from an agent with the older bounds still decodes; the controller reads each bucket with
the bounds it came with.
"""

from __future__ import annotations

import math


def log_bounds(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Bounds low, low*r, low*r^2 ... up to high (r = 10^(1/per_decade)), 3 significant digits."""
    if not 0 < low < high or per_decade < 1:
        raise ValueError("log_bounds needs 0 < low < high and per_decade >= 1")
    start = round(math.log10(low) * per_decade)
    stop = round(math.log10(high) * per_decade)
    return tuple(float(f"{10 ** (k / per_decade):.3g}") for k in range(start, stop + 1))


LATENCY_BOUNDS_MS: tuple[float, ...] = log_bounds(0.01, 10_000.0, 10)
CONFIDENCE_BOUNDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
