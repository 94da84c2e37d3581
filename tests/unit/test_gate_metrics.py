"""Gates that say what they can measure: known metric names only, the estimated accuracy
gated on its interval, on-device latency by default and end to end by its own name."""

from __future__ import annotations

import pytest

from controller.rollout import (
    DEFAULT_GATES,
    GATE_METRICS,
    CohortMetrics,
    GateInputs,
    GateResult,
    InvalidGate,
    check_gate_metrics,
    evaluate_gate,
    parse_gate,
)
from controller.rollout.gates import FAIL, INSUFFICIENT, PASS
from controller.services.rollout_metrics import to_gate_metrics
from controller.services.telemetry import metrics_of
from controller.services.telemetry_math import Totals
from edgefleet.errors import InvalidInput


@pytest.mark.parametrize("gate", ["accuracy >= 0.9", "foo <= 1", "drift_score <= 0.2"])
def test_unknown_metric_is_refused_naming_the_known_ones(gate: str) -> None:
    parse_gate(gate)  # the grammar alone accepts any name ...
    with pytest.raises(InvalidGate) as err:  # ... the catalogue does not
        check_gate_metrics([gate])
    assert isinstance(err.value, InvalidInput)
    message = str(err.value)
    assert "unknown metric" in message and "\n" not in message
    assert all(name in message for name in GATE_METRICS)


def test_default_gates_and_every_catalogued_metric_are_accepted() -> None:
    check_gate_metrics(DEFAULT_GATES)
    check_gate_metrics([f"{name} <= 1" for name in GATE_METRICS])
    assert "drift_score" not in GATE_METRICS  # nothing computes one: not reserved


def test_a_stored_gate_on_an_unknown_metric_says_why_it_waits() -> None:
    result = evaluate_gate(parse_gate("accuracy >= 0.9"), GateInputs(CohortMetrics({}, 10**6, 9)))
    assert result.status == INSUFFICIENT
    assert "nothing measures 'accuracy'" in result.reason and "estimated_accuracy" in result.reason


def _accuracy(low: float, high: float, value: float | None = None) -> GateInputs:
    values = {} if value is None else {"estimated_accuracy": value}
    return GateInputs(CohortMetrics(values, 5000, 4, {"estimated_accuracy": (low, high)}))


def test_estimated_accuracy_gate_decides_on_the_interval() -> None:
    gate = parse_gate("estimated_accuracy >= 0.9")
    passed = evaluate_gate(gate, _accuracy(0.91, 0.97, 0.94))
    assert passed.status == PASS and (passed.low, passed.high) == (0.91, 0.97)
    failed = evaluate_gate(gate, _accuracy(0.80, 0.89, 0.85))
    assert failed.status == FAIL and "whole 95% interval" in failed.reason
    # The point estimate clears the bar but the lower bound does not: wait, and say so.
    undecided = evaluate_gate(gate, _accuracy(0.88, 0.96, 0.93))
    assert undecided.status == INSUFFICIENT
    assert "straddles" in undecided.reason and "more evidence" in undecided.reason
    assert "[0.88, 0.96]" in undecided.reason
    # No interval at all: nothing to decide on.
    none = evaluate_gate(gate, GateInputs(CohortMetrics({"estimated_accuracy": 0.99}, 5000, 4)))
    assert none.status == INSUFFICIENT
    # An upper-bound gate mirrors it.
    at_most = parse_gate("estimated_accuracy <= 0.9")
    assert evaluate_gate(at_most, _accuracy(0.80, 0.89)).status == PASS
    assert evaluate_gate(at_most, _accuracy(0.91, 0.97)).status == FAIL


def test_estimated_accuracy_against_a_baseline_uses_its_point_estimate() -> None:
    gate = parse_gate("estimated_accuracy >= baseline - 0.02")
    control = CohortMetrics({"estimated_accuracy": 0.95}, 5000, 4, {"estimated_accuracy": (0.9, 1)})
    inputs = GateInputs(_accuracy(0.94, 0.97, 0.955).canary, control)
    result = evaluate_gate(gate, inputs)
    assert result.status == PASS and result.threshold == pytest.approx(0.93)


def test_intervals_survive_the_persisted_state() -> None:
    canary = _accuracy(0.88, 0.96, 0.93).canary
    assert CohortMetrics.from_dict(canary.to_dict()) == canary
    result = evaluate_gate(parse_gate("estimated_accuracy >= 0.9"), GateInputs(canary))
    assert GateResult.from_dict(result.to_dict()) == result
    # State stored before intervals existed still loads.
    legacy = {"gate": "error_rate <= 0.01", "metric": "error_rate", "status": "pass",
              "value": 0.0, "threshold": 0.01, "reason": "ok"}  # fmt: skip
    assert GateResult.from_dict(legacy).low is None
    assert CohortMetrics.from_dict({"values": {"x": 1}, "samples": 1, "devices": 1}).intervals == {}


def _telemetry_totals() -> Totals:
    """Local inference ~1-2 ms; end to end dominated by ~100 ms cloud round trips."""
    t = Totals()
    t.add_counts(
        {"reports": 2, "frames": 1000, "offloaded": 200, "offload_failures": 4,
         "offload_pairs": 196, "offload_agreed": 180, "audit_pairs": 40, "audit_agreed": 39},
        1_000, 61_000,
        latency={2.0: 790, 150.0: 210},
        local_latency={1.0: 10, 2.0: 990},
        errors={},
    )  # fmt: skip
    return t


def test_every_catalogued_metric_is_measured_by_telemetry() -> None:
    gate_metrics = to_gate_metrics(metrics_of(_telemetry_totals(), 2))
    measured = set(gate_metrics.values) | set(gate_metrics.intervals)
    # install_failure_rate comes from the engine's own device counts, not telemetry.
    assert measured == set(GATE_METRICS) - {"install_failure_rate"}
    low, high = gate_metrics.intervals["estimated_accuracy"]
    assert low <= gate_metrics.values["estimated_accuracy"] <= high


def test_p95_latency_is_on_device_and_end_to_end_has_its_own_name() -> None:
    m = to_gate_metrics(metrics_of(_telemetry_totals(), 2))
    assert 1.0 < m.values["p95_latency"] <= 2.0  # the local histogram
    assert 2.0 < m.values["p95_e2e_latency"] <= 150.0  # includes cloud round trips
    assert m.values["p50_latency"] <= m.values["p95_latency"]
    default = parse_gate(DEFAULT_GATES[0])
    assert default.metric == "p95_latency"
