"""Measurements: temperature fitting, calibration error, interleaved latency, sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.build.evaluate import (
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
    config = MeasureConfig(warmup=2, runs=6)
    lat = measure_latency(CountingRunner("v", calls), CountingRunner("b", calls), x, x, 1, config)
    timed = calls[4:]
    assert len(timed) == 12 and timed.count("v") == 6
    # every consecutive pair holds one run of each: interleaved, not two blocks
    assert all({timed[i], timed[i + 1]} == {"v", "b"} for i in range(0, 12, 2))
    assert lat.threads == 1 and lat.median_ms > 0 and lat.baseline_median_ms > 0
    assert lat.p95_ms >= lat.median_ms


def test_zstd_size_rewards_redundancy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "noise").write_bytes(rng.bytes(20000))
    (tmp_path / "zeros").write_bytes(bytes(20000))
    assert zstd_size(tmp_path / "zeros") < 100 < 19000 < zstd_size(tmp_path / "noise")


def test_thread_counts_are_capped() -> None:
    assert MeasureConfig(max_threads=2).threads_to_measure((4, 1, 2, 4)) == (1, 2)
