"""Measurements: temperature fitting, calibration error, interleaved latency, sizes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from controller.optimize import evaluate
from controller.optimize.evaluate import (
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


def test_runs_split_into_rounds_at_the_same_cost() -> None:
    assert MeasureConfig().round_sizes() == (5, 5, 5, 5, 5)
    assert MeasureConfig(runs=27).round_sizes() == (6, 6, 5, 5, 5)
    assert MeasureConfig(runs=10).round_sizes() == (4, 3, 3)  # rounds of at least 3
    assert MeasureConfig(runs=3).round_sizes() == (3,)
    assert MeasureConfig(runs=2, rounds=0).round_sizes() == (2,)
    for runs in range(1, 60):
        assert sum(MeasureConfig(runs=runs).round_sizes()) == runs


class FakeClock:
    """perf_counter_ns that only moves when a fake runner runs or a fake session opens."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def advance(self, ms: float) -> None:
        self.ns += int(ms * 1e6)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(evaluate, "time", SimpleNamespace(perf_counter_ns=fake.perf_counter_ns))
    return fake


class CostRunner:
    """One fake session: each run after its first ``warmup`` takes ``ms`` (warm-up is free)."""

    def __init__(self, name: str, clock: FakeClock, ms: float, warmup: int, log: list[str]):
        self.name, self.clock, self.ms, self.warmup, self.log = name, clock, ms, warmup, log
        self.calls = 0

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.calls >= self.warmup:
            self.clock.advance(self.ms)
        self.calls += 1
        self.log.append(self.name)
        return x


class Sessions:
    """A runner factory: the j-th session it opens costs ``costs[j]`` ms a run (cycled), and
    opening one takes ``open_ms``."""

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        costs: list[float],
        log: list[str],
        *,
        warmup: int = 0,
        open_ms: float = 0.0,
    ) -> None:
        self.name, self.clock, self.costs, self.log = name, clock, costs, log
        self.warmup, self.open_ms = warmup, open_ms
        self.opened: list[CostRunner] = []

    def __call__(self) -> CostRunner:
        self.clock.advance(self.open_ms)
        self.log.append(f"open {self.name}")
        ms = self.costs[len(self.opened) % len(self.costs)]
        runner = CostRunner(self.name, self.clock, ms, self.warmup, self.log)
        self.opened.append(runner)
        return runner


X = np.zeros((1, 4), np.float32)


def test_every_round_opens_both_sessions_afresh_and_interleaves(clock: FakeClock) -> None:
    log: list[str] = []
    config = MeasureConfig(warmup=2, runs=6, min_round_ms=0, budget_ms_per_run=0)
    variant = Sessions("v", clock, [2.0], log, warmup=2)
    baseline = Sessions("b", clock, [1.0], log, warmup=2)
    lat = measure_latency(variant, baseline, X, X, 1, config)
    assert len(lat.round_ratios) == 2  # 6 runs: two rounds of 3 (no time budget)
    assert len(variant.opened) == len(baseline.opened) == 2
    # who is opened first alternates; each round: 2 warm-up pairs, then 3 timed pairs
    assert log[:2] == ["open v", "open b"] and log[12:14] == ["open b", "open v"]
    for first in (0, 12):
        timed = log[first + 6 : first + 12]
        # every consecutive pair holds one run of each: interleaved, not two blocks
        assert all({timed[i], timed[i + 1]} == {"v", "b"} for i in range(0, 6, 2))
    assert [r.calls for r in variant.opened + baseline.opened] == [5, 5, 5, 5]
    assert lat.ratio == pytest.approx(2.0) and lat.median_ms == pytest.approx(2.0)
    assert lat.threads == 1 and lat.baseline_median_ms == pytest.approx(1.0)
    assert lat.p95_ms >= lat.median_ms


def test_session_pairing_bias_becomes_spread_that_the_median_averages_out(
    clock: FakeClock,
) -> None:
    log: list[str] = []
    # The same model as the baseline, but each session pair shares the cores differently:
    # timed on its first pair alone it would look 30% slower.
    variant = Sessions("v", clock, [1.3, 0.95, 1.0, 1.05, 0.9, 1.0, 1.2], log)
    baseline = Sessions("b", clock, [1.0], log)
    config = MeasureConfig(warmup=0, runs=21, rounds=7, min_round_ms=0, budget_ms_per_run=0)
    lat = measure_latency(variant, baseline, X, X, 2, config)
    assert lat.round_ratios == pytest.approx((1.3, 0.95, 1.0, 1.05, 0.9, 1.0, 1.2))
    assert lat.ratio == pytest.approx(1.0)
    lo, hi = lat.ratio_interval
    assert lo < 1.0 < hi and hi / lo > 1.05  # the pairing noise is in the interval


def test_each_round_gives_one_ratio_of_medians(clock: FakeClock) -> None:
    log: list[str] = []
    config = MeasureConfig(warmup=1, runs=9, rounds=3, min_round_ms=0, budget_ms_per_run=0)
    # The variant takes 2 ms; the baseline 1 ms, except in the second round (busy machine).
    variant = Sessions("v", clock, [2.0], log, warmup=1)
    baseline = Sessions("b", clock, [1.0, 2.0, 1.0], log, warmup=1)
    lat = measure_latency(variant, baseline, X, X, 2, config)
    assert lat.round_ratios == pytest.approx((2.0, 1.0, 2.0))
    assert lat.ratio == pytest.approx(2.0) and lat.median_ms == pytest.approx(2.0)
    lo, hi = lat.ratio_interval
    assert lo <= 2.0 <= hi and lat.has_interval


def test_rounds_of_a_fast_model_last_at_least_min_round_ms(clock: FakeClock) -> None:
    log: list[str] = []
    config = MeasureConfig(warmup=0, runs=10, rounds=2, min_round_ms=5.0, budget_ms_per_run=0)
    variant, baseline = Sessions("v", clock, [0.1], log), Sessions("b", clock, [0.15], log)
    lat = measure_latency(variant, baseline, X, X, 1, config)
    assert len(lat.round_ratios) == 2
    assert [r.calls for r in variant.opened] == [20, 20]  # 0.25 ms a pair: 20 pairs fill 5 ms
    slow_v, slow_b = Sessions("v", clock, [10.0], log), Sessions("b", clock, [10.0], log)
    measure_latency(slow_v, slow_b, X, X, 1, config)
    assert sum(r.calls for r in slow_v.opened) == 10  # a slow model is not timed more than runs


def test_cheap_measurements_get_more_rounds_within_the_time_budget(clock: FakeClock) -> None:
    log: list[str] = []
    # budget 10 runs x 2 ms = 20 ms; a fast model's round (20 pairs of 0.25 ms) takes 5 ms
    config = MeasureConfig(warmup=0, runs=10, rounds=2, min_round_ms=5.0, budget_ms_per_run=2)
    assert config.budget_ms == 20.0
    fast = measure_latency(
        Sessions("v", clock, [0.1], log), Sessions("b", clock, [0.15], log), X, X, 1, config
    )
    assert len(fast.round_ratios) == 4  # rounds are added until 20 ms have gone by
    capped = replace(config, max_rounds=3)
    three = measure_latency(
        Sessions("v", clock, [0.1], log), Sessions("b", clock, [0.15], log), X, X, 1, capped
    )
    assert len(three.round_ratios) == 3
    # opening sessions counts against the budget: 2.5 ms a session doubles a round's cost
    costly = measure_latency(
        Sessions("v", clock, [0.1], log, open_ms=2.5),
        Sessions("b", clock, [0.15], log, open_ms=2.5),
        X,
        X,
        1,
        config,
    )
    assert len(costly.round_ratios) == 2
    # a slow model gets just its rounds: 5 pairs of 20 ms are past the budget already
    slow = measure_latency(
        Sessions("v", clock, [10.0], log), Sessions("b", clock, [10.0], log), X, X, 1, config
    )
    assert len(slow.round_ratios) == 2
    one = replace(config, max_rounds=0)  # never fewer than one round
    assert (
        len(
            measure_latency(
                Sessions("v", clock, [1.0], log), Sessions("b", clock, [1.0], log), X, X, 1, one
            ).round_ratios
        )
        == 1
    )


def test_default_budget_is_half_a_second_per_variant_and_thread_count() -> None:
    config = MeasureConfig()
    assert config.budget_ms == 500.0 and config.max_rounds == 30
    assert config.round_sizes() == (5, 5, 5, 5, 5)


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
