"""Latency histograms resolve the model being served: a 0.03 ms model's p50/p95, read back
from the agent's buckets by the controller's percentile, are within a factor of 1.5 of the
truth (they were ten times too slow with a first bucket at 0.5 ms)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.telemetry import TelemetryAggregator
from controller.services.telemetry_math import Totals, histogram_buckets, percentile
from controller.services.telemetry_rows import hist_from_json, hist_to_json
from edgefleet.histograms import LATENCY_BOUNDS_MS, log_bounds


def test_bounds_are_log_spaced_from_ten_microseconds() -> None:
    b = LATENCY_BOUNDS_MS
    assert b[0] == pytest.approx(0.01) and b[-1] >= 5000
    assert max(hi / lo for lo, hi in itertools.pairwise(b)) < 1.3
    assert list(b) == sorted(set(b))
    with pytest.raises(ValueError):
        log_bounds(0, 1, 10)


@pytest.mark.parametrize("median_ms", [0.03, 0.025, 0.4, 7.0, 180.0])
def test_percentiles_within_a_factor_of_the_truth(median_ms: float) -> None:
    rng = np.random.default_rng(1)
    values = median_ms * rng.lognormal(0.0, 0.25, 2000)
    agg = TelemetryAggregator("d", process_stats=lambda: (0, 0.0))
    for v in values:
        agg.record_frame(float(v), float(v), 0.9)
    h = agg.report().local_latency_ms
    buckets = histogram_buckets(h.bounds, h.counts)
    # ... and through the database's JSON form and a merge, as fleet status reads it
    t = Totals()
    t.add_counts({"reports": 1}, 1, 2, {}, hist_from_json(hist_to_json(buckets)), {})
    for q in (0.5, 0.95):
        truth = float(np.quantile(values, q))
        got = percentile(t.local_latency, q)
        assert got is not None and truth / 1.5 <= got <= truth * 1.5, (q, truth, got)


def test_reports_with_the_old_bounds_still_decode() -> None:
    old = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000, 5000)
    counts = [0] * (len(old) + 1)
    counts[3] = 10  # (2, 3]
    buckets = histogram_buckets(old, counts)
    assert buckets == {2.0: 0, 3.0: 10}
    assert percentile(buckets, 0.5) == pytest.approx(2.5)  # inside its own bucket, not 0..3
