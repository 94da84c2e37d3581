"""Gate expressions: safe parsing and evaluation on canary vs baseline cohorts."""

from __future__ import annotations

import pytest

from controller.rollout.errors import InvalidGate
from controller.rollout.gates import (
    DEFAULT_GATES,
    FAIL,
    INSUFFICIENT,
    PASS,
    CohortMetrics,
    GateInputs,
    evaluate_gate,
    evaluate_gates,
    parse_gate,
)
from edgefleet.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "baseline", "threshold"),
    [
        ("p95_latency <= 1.2 * baseline", 14.0, 16.8),
        ("p95_latency<=baseline*1.5", 10.0, 15.0),
        ("agreement >= baseline - 0.01", 0.95, 0.94),
        ("offload_rate <= baseline + 0.05", 0.10, 0.15),
        ("error_rate <= 0.01", None, 0.01),
        ("install_failure_rate <= 0.1", None, 0.1),
        ("accuracy > baseline", 0.9, 0.9),
        ("x < 1e-3", None, 0.001),
    ],
)
def test_parse_and_threshold(text: str, baseline: float | None, threshold: float) -> None:
    gate = parse_gate(text)
    assert gate.threshold(baseline) == pytest.approx(threshold)
    assert gate.uses_baseline == (baseline is not None)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("p95_latency", "expected"),
        ("p95_latency == 3", "unexpected character"),
        ("p95_latency <= __import__('os')", "unexpected character"),
        ("p95_latency <= other * 2", "unknown name 'other'"),
        ("baseline <= 3", "metric name"),
        ("p95_latency <= baseline * baseline", "right side"),
        ("p95_latency <= 2 + baseline", "right side"),
        ("3 <= baseline", "metric name"),
    ],
)
def test_invalid_gates_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidGate, match=why) as info:
        parse_gate(text)
    assert isinstance(info.value, InvalidInput)


def cohort(samples: int = 1000, devices: int = 5, **values: float) -> CohortMetrics:
    return CohortMetrics(values, samples, devices)


def test_pass_and_fail_with_reason() -> None:
    inputs = GateInputs(cohort(p95_latency=14.1), control=cohort(p95_latency=14.0))
    ok = evaluate_gate(parse_gate("p95_latency <= 1.2 * baseline"), inputs)
    assert ok.status == PASS and ok.passed
    assert ok.value == 14.1 and ok.threshold == pytest.approx(16.8)
    assert "14.1 ms <= 16.8 ms passed" in ok.reason
    bad = evaluate_gate(parse_gate("p95_latency <= 1.0 * baseline"), inputs)
    assert bad.status == FAIL and "failed" in bad.reason


def test_pre_rollout_baseline_when_no_control() -> None:
    inputs = GateInputs(cohort(agreement=0.90), pre_rollout=cohort(agreement=0.95))
    result = evaluate_gate(parse_gate("agreement >= baseline - 0.01"), inputs)
    assert result.status == FAIL
    assert result.threshold == pytest.approx(0.94)


def test_insufficient_data_is_waiting_not_pass() -> None:
    gate = parse_gate("error_rate <= 0.01")
    few = GateInputs(cohort(samples=10, error_rate=0.0))
    result = evaluate_gate(gate, few, min_samples=100)
    assert result.status == INSUFFICIENT and "waiting for data" in result.reason
    assert "10 of 100 frames" in result.reason
    lonely = GateInputs(cohort(devices=1, error_rate=0.0))
    assert evaluate_gate(gate, lonely, min_devices=3).status == INSUFFICIENT
    # A baseline gate without any baseline cohort waits too.
    rel = evaluate_gate(parse_gate("agreement >= baseline"), GateInputs(cohort(agreement=1.0)))
    assert rel.status == INSUFFICIENT
    # The control cohort must itself have enough data.
    weak_control = GateInputs(cohort(agreement=1.0), control=cohort(samples=3, agreement=0.5))
    assert (
        evaluate_gate(parse_gate("agreement >= baseline"), weak_control, min_samples=100).status
        == INSUFFICIENT
    )


def test_missing_metric_waits() -> None:
    result = evaluate_gate(parse_gate("offload_rate <= 0.5"), GateInputs(cohort(error_rate=0.0)))
    assert result.status == INSUFFICIENT and "no offload_rate" in result.reason


def test_default_gates_all_evaluate() -> None:
    canary = cohort(p95_latency=10.0, agreement=0.97, error_rate=0.0, offload_rate=0.12)
    control = cohort(p95_latency=10.0, agreement=0.97, error_rate=0.0, offload_rate=0.10)
    results = evaluate_gates(DEFAULT_GATES, GateInputs(canary, control))
    assert [r.status for r in results] == [PASS] * 4
    assert {r.metric for r in results} == {"p95_latency", "agreement", "error_rate", "offload_rate"}


def test_baseline_gates_do_not_block_a_first_install() -> None:
    gate = parse_gate("p95_latency <= 1.2 * baseline")
    canary = CohortMetrics({"p95_latency": 7.0}, 500, 2)
    waiting = evaluate_gate(gate, GateInputs(canary), min_samples=100)
    assert waiting.status == "insufficient"
    first = evaluate_gate(gate, GateInputs(canary), min_samples=100, first_install=True)
    assert first.passed and "first install" in first.reason
    # too little data still waits, first install or not
    few = GateInputs(CohortMetrics({"p95_latency": 7.0}, 5, 2))
    assert evaluate_gate(gate, few, min_samples=100, first_install=True).status == "insufficient"


def test_baseline_that_reported_without_the_metric_is_not_applicable() -> None:
    """The pre-rollout model produced no agreement (no cloud model): the canary is not held
    back forever; the gate passes and says why. A baseline with no telemetry yet waits."""
    gate = parse_gate("agreement >= baseline - 0.01")
    canary = CohortMetrics({"agreement": 0.97, "p95_latency": 7.0}, 500, 2)
    reported = CohortMetrics({"p95_latency": 7.0}, 400, 2)  # telemetry, but no agreement
    result = evaluate_gate(gate, GateInputs(canary, pre_rollout=reported), min_samples=100)
    assert result.status == PASS and result.threshold is None
    assert "pre-rollout reported 400 frames but no agreement" in result.reason
    assert "not applicable" in result.reason
    # the same for a control cohort whose model produced none
    control = evaluate_gate(gate, GateInputs(canary, control=reported), min_samples=100)
    assert control.status == PASS and "control reported 400 frames" in control.reason
    # not reported yet (or not enough yet): still waiting, as before
    assert evaluate_gate(gate, GateInputs(canary), min_samples=100).status == INSUFFICIENT
    thin = CohortMetrics({"p95_latency": 7.0}, 20, 2)
    short = evaluate_gate(gate, GateInputs(canary, pre_rollout=thin), min_samples=100)
    assert short.status == INSUFFICIENT and "pre-rollout has 20 of 100 frames" in short.reason
    empty = CohortMetrics({}, 0, 0)
    nothing = evaluate_gate(gate, GateInputs(canary, pre_rollout=empty), min_samples=0)
    assert nothing.status == INSUFFICIENT
    # the canary still has to measure the metric itself
    no_canary = GateInputs(CohortMetrics({"p95_latency": 7.0}, 500, 2), pre_rollout=reported)
    assert evaluate_gate(gate, no_canary, min_samples=100).status == INSUFFICIENT
