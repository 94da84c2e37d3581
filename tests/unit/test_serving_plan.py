"""The serving plan chosen from measured figures (pure), and the timing shell on a fake clock."""

from __future__ import annotations

import pytest

from controller.serving.measure import measure_batches
from controller.serving.plan import (
    BatchMeasurement,
    LoadComparison,
    LoadRound,
    best_batch,
    choose_plan,
    operator_plan,
    pending_plan,
)


def measured(size: int, per_frame_ms: float, ratios: tuple[float, ...]) -> BatchMeasurement:
    return BatchMeasurement(size, per_frame_ms * size, per_frame_ms * size * 1.2, ratios)


GAINS_ALONE = [
    measured(1, 4.0, (1.0,) * 5),
    measured(2, 3.0, (0.76, 0.74, 0.75, 0.77, 0.73)),
    measured(4, 1.6, (0.40, 0.41, 0.39, 0.40, 0.42)),  # 2.5x
    measured(8, 1.5, (0.33, 0.43, 0.36, 0.41, 0.38)),  # 2.6x [2.3..3.1]: 4 is within it
    measured(16, 1.6, (0.40, 0.42, 0.39, 0.41, 0.40)),
]


def under_load(size: int, gains: tuple[float, ...], p95_ratio: float) -> LoadComparison:
    rounds = tuple(LoadRound(100.0, 10.0, 100.0 * g, 10.0 * p95_ratio) for g in gains)
    return LoadComparison(size, 8, rounds)


def test_batching_pays_alone_and_under_load_picks_the_smallest_size_as_good_as_the_best() -> None:
    chosen = best_batch(GAINS_ALONE)
    assert chosen is not None and chosen.batch_size == 4  # 8 is no better beyond the noise
    plan = choose_plan(GAINS_ALONE, under_load(4, (1.8, 1.9, 1.7, 1.85), 0.6))
    assert plan.source == "measured" and plan.batched
    assert plan.max_batch_size == 4 and plan.max_queue_delay_ms == 0.0
    assert (
        plan.reason.startswith("batching pays: 8 concurrent callers") and "batch 4" in plan.reason
    )
    assert plan.summary() == "batch <= 4, no queue delay (measured)"
    figures = plan.to_dict()
    assert [m["batch_size"] for m in figures["measurements"]] == [1, 2, 4, 8, 16]
    assert figures["load"]["gain"] == pytest.approx(1.825) and figures["load"]["clients"] == 8


def test_a_model_that_gains_alone_is_served_directly_when_the_batcher_loses_under_load() -> None:
    slower = choose_plan(GAINS_ALONE, under_load(4, (0.8, 0.9, 0.85, 0.8), 0.9))
    assert not slower.batched and slower.reason.startswith("the batcher does not pay under load")
    worse_p95 = choose_plan(GAINS_ALONE, under_load(4, (1.5, 1.6, 1.5, 1.6), 1.4))
    assert not worse_p95.batched and "p95 1.40x" in worse_p95.reason
    untested = choose_plan(GAINS_ALONE)
    assert not untested.batched and "not tested under load" in untested.reason


def test_batching_that_gains_alone_only_has_to_not_lose_under_load() -> None:
    # measured on the fashion teacher on a busy 2-core host: a win inside the noise
    noisy_win = choose_plan(GAINS_ALONE, under_load(4, (1.0, 1.6, 0.8, 1.4), 1.04))
    assert noisy_win.batched and noisy_win.max_batch_size == 4
    assert noisy_win.load is not None and noisy_win.load.gain[1] < 1.0  # not beyond the noise
    flat_worse_p95 = choose_plan(GAINS_ALONE, under_load(4, (1.0, 1.02, 0.99, 1.01), 1.2))
    assert not flat_worse_p95.batched and "p95 <= 1.1x" in flat_worse_p95.reason


def test_batching_does_not_pay_when_batch_one_is_as_fast_per_frame() -> None:
    # what ONNX Runtime does with a MobileNet-class model on this CPU: batch 1 ~ batch 32
    plan = choose_plan(
        [measured(1, 1.5, (1.0,) * 5)]
        + [measured(b, 1.45, (0.97, 1.01, 0.95, 0.99, 0.96)) for b in (2, 4, 8, 16, 32)]
    )
    assert not plan.batched and plan.max_batch_size == 1 and plan.max_queue_delay_ms == 0.0
    assert plan.reason.startswith("batching does not pay")
    assert "frames/s" in plan.reason
    assert plan.summary() == "direct call, batch 1 (measured)"


def test_a_gain_lost_in_the_noise_does_not_count() -> None:
    noisy = measured(8, 2.0, (0.35, 1.3, 0.5, 1.1, 0.6))  # median 1.67x, interval wide
    assert noisy.gain > 1.2 and noisy.gain_interval[0] < 1.2
    plan = choose_plan([measured(1, 4.0, (1.0,) * 5), noisy])
    assert not plan.batched and "beyond the noise" in plan.reason


def test_only_batch_one_measured_and_why() -> None:
    plan = choose_plan([measured(1, 3.0, (1.0,) * 3)], not_measured="batch 2 and larger: no")
    assert not plan.batched and "only batch 1" in plan.reason
    assert "batch 2 and larger" in plan.reason
    with pytest.raises(ValueError, match="batch size 1"):
        choose_plan([measured(2, 3.0, (1.0,))])


def test_operator_and_pending_plans() -> None:
    assert operator_plan(8, None).max_queue_delay_ms == 2.0
    assert operator_plan(None, 5.0).max_batch_size == 16
    direct = operator_plan(1, 3.0)
    assert not direct.batched and direct.max_queue_delay_ms == 0.0 and direct.source == "operator"
    assert not pending_plan().batched and pending_plan().source == "pending"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_measure_batches_times_interleaved_rounds_within_the_budget() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def run(size: int) -> None:  # 2 ms + 0.25 ms per frame: batching pays
        calls.append(size)
        clock.now += 0.002 + 0.00025 * size

    timings = measure_batches(run, (1, 2, 4, 8), budget_s=1.0, rounds=4, clock=clock)
    assert [m.batch_size for m in timings.measurements] == [1, 2, 4, 8]
    assert timings.not_measured == "" and timings.elapsed_s < 1.1
    by_size = {m.batch_size: m for m in timings.measurements}
    assert by_size[1].median_ms == pytest.approx(2.25)
    assert len(by_size[8].round_ratios) == 4
    assert by_size[8].gain == pytest.approx(8 * 2.25 / 4.0)
    chosen = best_batch(timings.measurements)
    assert chosen is not None and chosen.batch_size == 8


def test_measure_batches_stops_at_sizes_over_the_budget_or_that_fail() -> None:
    clock = FakeClock()

    def slow(size: int) -> None:  # 100 ms a frame: 4 frames would not fit a round's 250 ms
        clock.now += 0.1 * size

    timings = measure_batches(slow, (1, 2, 4, 8), budget_s=1.0, rounds=4, clock=clock)
    assert [m.batch_size for m in timings.measurements] == [1]
    assert timings.not_measured.startswith("batch 2 and larger not measured")
    assert "only batch 1" in choose_plan(timings.measurements, not_measured="x").reason

    def fixed_batch(size: int) -> None:
        clock.now += 0.001
        if size > 1:
            raise RuntimeError("input batch axis is fixed at 1")

    timings = measure_batches(fixed_batch, (1, 2, 4), budget_s=0.1, rounds=3, clock=clock)
    assert [m.batch_size for m in timings.measurements] == [1]
    assert "fixed at 1" in timings.not_measured
