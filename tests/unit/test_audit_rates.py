"""Adaptive audit rate: the plan within the per-device and per-fleet budgets, and the
desired-state overlay chained in front of the drift-aware offload budgets."""

from __future__ import annotations

import json

from controller.monitoring.estimate import (
    INF,
    AccuracyEstimate,
    BinCounts,
    CloudTable,
    WindowCounts,
    estimate_accuracy,
)
from controller.monitoring.offload_budget import OffloadBudgets
from controller.services.audit_rates import AuditBudget, AuditRates, DevicePlan, plan

TABLE = CloudTable(
    "cloud:1",
    {
        0.3: BinCounts(n=100, edge_correct=50, cloud_correct=80, agree=50, agree_wrong=5),
        INF: BinCounts(n=900, edge_correct=880, cloud_correct=890, agree=875, agree_wrong=5),
    },
)


def estimate(audit_pairs: int, agreed: int) -> AccuracyEstimate:
    w = WindowCounts(1200, 240, 0, 240, 120, audit_pairs, agreed, {0.3: 240, INF: 960})
    return estimate_accuracy(w, TABLE)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None) -> None:
        self.sent.append((device_id, json.loads(payload)))


def test_plan_asks_more_audits_where_the_interval_is_wide_within_both_budgets() -> None:
    budget = AuditBudget(
        target_half_width=0.05, max_device_fps=1.0, max_fleet_fps=1.5, window_s=120
    )
    plans = plan({"few": (estimate(20, 19), 16.0), "many": (estimate(900, 880), 16.0)}, budget)
    assert plans["few"].fraction > plans["many"].fraction >= budget.floor
    assert plans["few"].fraction * 16.0 <= 1.0 + 1e-9  # the device budget
    assert sum(p.fraction * 16.0 for p in plans.values()) <= 1.5 + 1e-9  # the fleet budget
    assert "fleet" in plans["few"].why or "budget" in plans["few"].why


def test_overlay_reaches_the_device_beside_the_offload_budget() -> None:
    mqtt = Recorder()
    budgets = OffloadBudgets(mqtt, ceiling_fps=10.0)
    rates = AuditRates(budgets)
    rates.publish_desired("cam-1", json.dumps({"device_id": "cam-1", "variant_id": "v"}).encode())
    assert mqtt.sent[-1][1]["audit_fraction"] == 0.0 and mqtt.sent[-1][1]["variant_id"] == "v"
    assert rates.apply({"cam-1": DevicePlan(0.05, "why")}) == ["cam-1"]
    assert mqtt.sent[-1][1] == {
        "device_id": "cam-1", "variant_id": "v", "audit_fraction": 0.05, "offload_max_fps": 0.0,
    }  # fmt: skip
    assert rates.apply({"cam-1": DevicePlan(0.052, "why")}) == []  # within a tenth: unchanged
    budgets.raise_to("cam-1", 4.0, "drift")  # the budget's republish keeps the audit fraction
    assert mqtt.sent[-1][1]["audit_fraction"] == 0.05 and mqtt.sent[-1][1]["offload_max_fps"] == 4.0
    assert rates.fraction("cam-1") == 0.05 and rates.fraction("other") == 0.0
