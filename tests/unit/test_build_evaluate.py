"""Measurements: temperature fitting, calibration error, interleaved latency, sizes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from controller.build import evaluate
from controller.build.evaluate import (
    Evaluation,
    Latency,
    MeasureConfig,
    as_logits,
    expected_calibration_error,
    fit_temperature,
    measure_latency,
    nll,
    softmax,
    zstd_size,
)


def calibrated_sample(
    n: int = 4000, classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated at temperature 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    probs = softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_temperature_recovers_overconfidence() -> None:
    logits, labels = calibrated_sample()
    t = fit_temperature(logits * 3.0, labels)
    assert 2.5 < t < 3.5
    assert nll(logits * 3.0, labels, t) < nll(logits * 3.0, labels, 1.0)
    assert 0.8 < fit_temperature(logits, labels) < 1.2


def test_ece_small_when_calibrated_large_when_overconfident() -> None:
    logits, labels = calibrated_sample()
    calibrated = expected_calibration_error(softmax(logits), labels, bins=15)
    overconfident = expected_calibration_error(softmax(logits * 4.0), labels, bins=15)
    assert calibrated < 0.03
    assert overconfident > 3 * calibrated


def test_probabilities_become_log_probabilities() -> None:
    logits, _ = calibrated_sample(50)
    probs = softmax(logits)
    np.testing.assert_allclose(softmax(as_logits(probs)), probs, atol=1e-6)
    np.testing.assert_array_equal(as_logits(logits), logits)


class CountingRunner:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, x: np.ndarray) -> np.ndarray:
        self.log.append(self.name)
        return x


def test_latency_runs_alternate_between_variant_and_baseline() -> None:
    calls: list[str] = []
    x = np.zeros((1, 4), np.float32)
    config = MeasureConfig(warmup=2, runs=6, min_round_ms=0)
    lat = measure_latency(CountingRunner("v", calls), CountingRunner("b", calls), x, x, 1, config)
    timed = calls[4:]
    assert len(timed) == 12 and timed.count("v") == 6
    # every consecutive pair holds one run of each: interleaved, not two blocks
    assert all({timed[i], timed[i + 1]} == {"v", "b"} for i in range(0, 12, 2))
    assert lat.threads == 1 and lat.median_ms > 0 and lat.baseline_median_ms > 0
    assert lat.p95_ms >= lat.median_ms
    assert len(lat.round_ratios) == 2  # 6 runs: two rounds of 3


def test_runs_split_into_rounds_at_the_same_cost() -> None:
    assert MeasureConfig().round_sizes() == (5, 5, 5, 5, 5)
    assert MeasureConfig(runs=27).round_sizes() == (6, 6, 5, 5, 5)
    assert MeasureConfig(runs=10).round_sizes() == (4, 3, 3)  # rounds of at least 3
    assert MeasureConfig(runs=3).round_sizes() == (3,)
    assert MeasureConfig(runs=2, rounds=0).round_sizes() == (2,)
    for runs in range(1, 60):
        assert sum(MeasureConfig(runs=runs).round_sizes()) == runs


class FakeClock:
    """perf_counter_ns that only moves when a fake runner runs."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns


class CostRunner:
    """Takes ``costs[i]`` ms on its i-th timed run (the warm-up runs are free)."""

    def __init__(self, clock: FakeClock, costs: list[float], warmup: int) -> None:
        self.clock, self.costs, self.warmup, self.calls = clock, costs, warmup, 0

    def run(self, x: np.ndarray) -> np.ndarray:
        i = self.calls - self.warmup
        self.calls += 1
        if i >= 0:
            self.clock.ns += int(self.costs[i % len(self.costs)] * 1e6)
        return x


def test_each_round_gives_one_ratio_of_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(evaluate, "time", SimpleNamespace(perf_counter_ns=clock.perf_counter_ns))
    x = np.zeros((1, 4), np.float32)
    config = MeasureConfig(warmup=1, runs=9, rounds=3, min_round_ms=0)
    # The variant takes 2 ms; the baseline 1 ms, except in the second round (busy machine).
    variant = CostRunner(clock, [2.0], warmup=1)
    baseline = CostRunner(clock, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0], warmup=1)
    lat = measure_latency(variant, baseline, x, x, 2, config)
    assert lat.round_ratios == pytest.approx((2.0, 1.0, 2.0))
    assert lat.ratio == pytest.approx(2.0) and lat.median_ms == pytest.approx(2.0)
    lo, hi = lat.ratio_interval
    assert lo <= 2.0 <= hi and lat.has_interval


def test_rounds_of_a_fast_model_last_at_least_min_round_ms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(evaluate, "time", SimpleNamespace(perf_counter_ns=clock.perf_counter_ns))
    x = np.zeros((1, 4), np.float32)
    config = MeasureConfig(warmup=0, runs=10, rounds=2, min_round_ms=5.0)
    variant, baseline = CostRunner(clock, [0.1], 0), CostRunner(clock, [0.15], 0)
    lat = measure_latency(variant, baseline, x, x, 1, config)
    assert len(lat.round_ratios) == 2
    assert variant.calls == baseline.calls == 2 * 20  # 0.25 ms a pair: 20 pairs fill 5 ms
    slow_v, slow_b = CostRunner(clock, [10.0], 0), CostRunner(clock, [10.0], 0)
    measure_latency(slow_v, slow_b, x, x, 1, config)
    assert slow_v.calls == 10  # a slow model is not timed more than ``runs``


def test_latency_interval_is_robust_and_round_trips() -> None:
    lat = Latency(2, 1.0, 1.2, 1.0, 1.1, (1.0, 1.02, 0.98, 1.01, 3.0))  # one wild round
    assert lat.ratio == pytest.approx(1.01)
    lo, hi = lat.ratio_interval
    assert 0.9 < lo < 1.01 < hi < 1.12  # the wild round barely widens it
    assert lat.interval_ms == pytest.approx((lo, hi))
    data = json.loads(json.dumps(lat.to_dict()))
    assert data["rounds"] == 5 and data["ratio_lo"] == pytest.approx(lo)
    assert Latency.from_dict(data) == lat
    same = Latency(1, 1.0, 1.0, 1.0, 1.0, (1.0, 1.0, 1.0))
    assert same.ratio_interval == (1.0, 1.0) and same.sigma == 0.0
    single = Latency(1, 2.0, 2.0, 1.0, 1.0, (2.0,))
    assert not single.has_interval and single.ratio_interval == (2.0, 2.0)


def sample_evaluation(latency: dict[int, Latency]) -> Evaluation:
    return Evaluation(
        variant="v",
        runtime="onnxruntime",
        precision="int8",
        size_bytes=10,
        zstd_bytes=5,
        accuracy=0.9,
        accuracy_drop_pp=0.1,
        agreement=0.99,
        temperature=1.2,
        ece=0.01,
        estimated_memory_bytes=100,
        latency=latency,
        confidence_quantiles={"max_prob": [0.1, 0.5]},
    )


def test_evaluation_round_trips_through_json() -> None:
    from controller.services.model_views import evaluation_from_dict

    ev = sample_evaluation({1: Latency(1, 2.0, 2.5, 1.0, 1.1, (1.9, 2.0, 2.1))})
    data = json.loads(json.dumps(ev.to_dict()))
    assert Evaluation.from_dict(data) == ev == evaluation_from_dict(data)


def test_evaluations_stored_before_rounds_still_load() -> None:
    old = sample_evaluation({}).to_dict()
    old["latency"] = {  # what a build wrote before latency rounds existed
        "1": {
            "threads": 1,
            "median_ms": 2.0,
            "p95_ms": 2.5,
            "baseline_median_ms": 1.0,
            "baseline_p95_ms": 1.1,
            "ratio": 2.0,
        }
    }
    ev = Evaluation.from_dict(json.loads(json.dumps(old)))
    lat = ev.latency[1]
    assert lat.round_ratios == () and not lat.has_interval
    assert lat.ratio == 2.0 and lat.ratio_interval == (2.0, 2.0)
    assert lat.to_dict()["interval_ms"] is None
    at_four = ev.latency_at(4)
    assert at_four is not None and math.isclose(at_four.ratio, 2.0)


def test_zstd_size_rewards_redundancy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "noise").write_bytes(rng.bytes(20000))
    (tmp_path / "zeros").write_bytes(bytes(20000))
    assert zstd_size(tmp_path / "zeros") < 100 < 19000 < zstd_size(tmp_path / "noise")


def test_thread_counts_are_capped() -> None:
    assert MeasureConfig(max_threads=2).threads_to_measure((4, 1, 2, 4)) == (1, 2)
