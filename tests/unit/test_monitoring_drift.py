"""Drift scores, alert rules, the offload budgets' ceiling and the agent's drift-aware budget
policy: the pure parts, with hand-checked numbers."""

from __future__ import annotations

import json
import math
import random

import pytest

from agent.inference.policy import BudgetPolicy
from controller.monitoring.alerts import AlertRules, DeviceObservation, RolloutObservation, findings
from controller.monitoring.drift import Baseline, bucket_counts, drift_score, expected_agreement
from controller.monitoring.offload_budget import OffloadBudgets
from controller.services.telemetry import metrics_of
from controller.services.telemetry_math import INF, Totals
from edgefleet.drift import counts_of, psi
from edgefleet.histograms import CONFIDENCE_BOUNDS


def test_psi_matches_its_formula_and_is_zero_for_the_same_shape() -> None:
    assert psi([10, 30, 60], [20, 60, 120]) == pytest.approx(0.0)
    # shares (0.5, 0.5) vs (0.9, 0.1): (0.4 ln 1.8) + (-0.4 ln 0.2)
    assert psi([5, 5], [9, 1]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))
    assert psi([0, 0], [1, 1]) is None
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


def test_counts_follow_the_agents_bucketing_and_the_telemetry_form() -> None:
    counts = counts_of([0.05, 0.051, 0.99, 1.0])
    assert counts[0] == 1 and counts[1] == 1 and counts[-1] == 2  # 0.05 counts below it
    # telemetry's {upper: count} with zero-count lower-bound keys, overflow as inf
    assert bucket_counts({0.05: 0, 0.1: 3, 0.95: 0, INF: 7}) == [0, 3, *[0] * 17, 7]


def test_baseline_read_off_quantiles_keeps_the_mass_in_place() -> None:
    quantiles = [0.5 + 0.025 * i for i in range(21)]  # uniform on [0.5, 1.0]
    b = Baseline.from_quantiles(quantiles, accuracy=0.9, n=10_000)
    assert sum(b.counts[:10]) == 0  # nothing below 0.5
    assert b.counts[10] == pytest.approx(1000, abs=2)  # (0.5, 0.55]: a tenth
    assert sum(b.correct) == pytest.approx(0.9 * sum(b.counts), rel=0.01)
    assert Baseline.from_dict(b.to_dict()) == b


def _baseline() -> Baseline:
    """Validation: half the frames in (0.45, 0.5] right 60% of the time, half above 0.95
    right 100%."""
    counts = [0] * 20
    correct = [0] * 20
    counts[9], correct[9] = 500, 300
    counts[19], correct[19] = 500, 500
    return Baseline(tuple(counts), tuple(correct))


def test_expected_agreement_splits_pairs_like_the_agent_makes_them() -> None:
    b = _baseline()
    # half offloaded: the offloaded (least confident) pairs expect 0.6, the audited 1.0
    assert expected_agreement(b, list(b.counts), 0.5, 100, 100) == pytest.approx(0.8)
    assert expected_agreement(b, list(b.counts), 0.5, 100, 0) == pytest.approx(0.6)
    assert expected_agreement(b, list(b.counts), 0.5, 0, 0) is None


def _totals(confidence: dict[float, int], frames: int, pairs: int, agreed: int) -> Totals:
    t = Totals()
    t.add_counts(
        {"reports": 1, "frames": frames, "offloaded": frames // 2,
         "offload_pairs": pairs // 2, "offload_agreed": agreed // 2,
         "audit_pairs": pairs - pairs // 2, "audit_agreed": agreed - agreed // 2},
        1_000, 61_000, {1.0: frames}, {1.0: frames}, {}, confidence,
    )  # fmt: skip
    return t


def test_drift_score_of_a_clean_and_a_confidently_wrong_window() -> None:
    b = _baseline()
    clean = drift_score(b, _totals({0.45: 0, 0.5: 500, 0.95: 0, INF: 500}, 1000, 200, 160))
    assert clean.psi == pytest.approx(0.0, abs=1e-9)
    assert clean.expected_agreement == pytest.approx(0.8)
    assert clean.agreement_drop == pytest.approx(0.0)
    shifted = drift_score(b, _totals({0.95: 0, INF: 1000}, 1000, 200, 40))
    assert shifted.psi is not None and shifted.psi > 1.0
    assert shifted.expected_agreement == pytest.approx(1.0)  # confident frames expect 1.0
    assert shifted.agreement == pytest.approx(0.2)
    assert shifted.agreement_high < 0.3
    assert drift_score(None, _totals({}, 10, 0, 0)).psi is None


def _device(
    drift_totals: Totals | None, *, online: bool = True, seen_ms: int = 0
) -> DeviceObservation:
    return DeviceObservation(
        device_id="dev-1", name="cam-1", enrolled=True, online=online, last_seen_ms=seen_ms,
        metrics=metrics_of(drift_totals, 1) if drift_totals else None,
        drift=drift_score(_baseline(), drift_totals) if drift_totals else None,
    )  # fmt: skip


def test_rules_fire_on_shift_offline_and_halt_and_stay_quiet_on_clean() -> None:
    rules = AlertRules()
    clean = _totals({0.45: 0, 0.5: 500, 0.95: 0, INF: 500}, 1000, 200, 160)
    shifted = _totals({0.95: 0, INF: 1000}, 1000, 200, 40)
    now = 1_000_000
    assert findings(rules, [_device(clean)], [], now) == []
    fired = {f.rule for f in findings(rules, [_device(shifted)], [], now)}
    assert fired == {"drift", "agreement_drop"}
    offline = findings(rules, [_device(None, online=False, seen_ms=now - 61_000)], [], now)
    assert [f.rule for f in offline] == ["device_offline"]
    assert findings(rules, [_device(None, online=False, seen_ms=now - 5_000)], [], now) == []
    halted = findings(rules, [], [RolloutObservation("r1", "m:1", "halted", "gate p95")], now)
    assert [(f.rule, f.severity) for f in halted] == [("rollout_halted", "critical")]
    few = _totals({0.95: 0, INF: 100}, 100, 10, 2)  # too little evidence for either rule
    assert findings(rules, [_device(few)], [], now) == []


def test_accuracy_and_offload_failure_rules() -> None:
    t = _totals({0.45: 0, 0.5: 500, 0.95: 0, INF: 500}, 1000, 200, 160)
    t.offload_failures = 400  # of 500 offloaded
    rules = AlertRules(accuracy_floor=0.99)
    fired = {f.rule for f in findings(rules, [_device(t)], [], 0)}
    assert {"offload_failures", "accuracy_low"} <= fired


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None) -> None:
        self.sent.append((device_id, json.loads(payload)))


def test_budgets_stay_within_the_ceiling_and_ride_on_the_rollouts_desired_state() -> None:
    pub = Publisher()
    events: list[str] = []
    budgets = OffloadBudgets(pub, 30.0, [lambda e: events.append(e.kind)])
    budgets.publish_desired("a", json.dumps({"device_id": "a", "variant_id": "m:1:x"}).encode())
    assert pub.sent[-1][1] == {"device_id": "a", "variant_id": "m:1:x", "offload_max_fps": 0.0}
    assert budgets.raise_to("a", 20.0, "drift") == 20.0
    assert pub.sent[-1][1]["variant_id"] == "m:1:x" and pub.sent[-1][1]["offload_max_fps"] == 20
    assert budgets.raise_to("b", 20.0, "drift") == 10.0  # what the ceiling leaves
    assert pub.sent[-1][1] == {"device_id": "b", "offload_max_fps": 10.0}
    assert budgets.raise_to("c", 5.0, "drift") == 0.0 and budgets.budget("c") == 0.0
    assert budgets.granted_fps() == 30.0
    budgets.lower("a", "drift ended")
    assert pub.sent[-1][1]["offload_max_fps"] == 0.0 and budgets.raised() == ["b"]
    assert events == ["offload.budget"] * 3
    budgets.set_ceiling(5.0)  # below what is granted: withdrawn, granted again within it
    assert budgets.granted_fps() == 0.0 and pub.sent[-1][1]["offload_max_fps"] == 0.0
    assert budgets.raise_to("b", 20.0, "drift") == 5.0
    assert budgets.raise_to("b", 2.0, "drift") == 5.0  # a slower device keeps its grant


def test_budget_policy_takes_the_grant_and_its_own_shift_check() -> None:
    clock = [0.0]

    def tick() -> float:
        clock[0] += 0.05  # 20 frames/s
        return clock[0]

    policy = BudgetPolicy(target_fraction=0.2, clock=tick, shift_target=0.6)
    validation = [0.97] * 800 + [0.5] * 200
    policy.set_baseline(counts_of(validation), CONFIDENCE_BOUNDS)
    rng = random.Random(0)
    for _ in range(400):
        policy.should_offload(rng.choice(validation))
    assert not policy.shifted and policy.current_target() == pytest.approx(0.2)
    policy.set_boost_fps(10.0)  # half the frame rate
    assert policy.current_target() == pytest.approx(0.5, rel=0.05)
    policy.set_boost_fps(0.0)
    for _ in range(600):  # a shift: confidences spread low
        policy.should_offload(rng.uniform(0.2, 0.8))
    assert policy.shifted and policy.current_target() == pytest.approx(0.6)
    offloaded = sum(policy.should_offload(rng.uniform(0.2, 0.8)) for _ in range(500))
    assert 0.5 < offloaded / 500 < 0.7


def test_the_agent_follows_the_desired_states_grant_and_the_variants_baseline() -> None:
    from types import SimpleNamespace

    from agent.inference.drift import drift_baseline_follows, drift_budget_follows

    policy = BudgetPolicy(target_fraction=0.2)
    follow = drift_budget_follows(policy)
    follow(json.dumps({"device_id": "d", "variant_id": "m:1:x", "offload_max_fps": 12.5}).encode())
    assert policy.boost_fps == 12.5
    follow(b"not json")  # malformed: left to the OTA service to refuse and report
    follow(json.dumps({"device_id": "d"}).encode())  # no grant in it: back to its own budget
    assert policy.boost_fps == 0.0
    counts = counts_of([0.9] * 30)
    hist = {"max_softmax": {"bounds": list(CONFIDENCE_BOUNDS), "counts": counts}}
    loaded = SimpleNamespace(metadata=SimpleNamespace(extra={"confidence_histogram": hist}),
                             variant_id="m:1:x")  # fmt: skip
    drift_baseline_follows(policy, "max_softmax")(loaded)  # type: ignore[arg-type]
    assert policy.baseline == counts
