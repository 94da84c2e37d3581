"""The monitoring families of /metrics: alert states and drift-aware offload budgets, read at
scrape time from the alert log and the budgets (controller.monitoring). Drift scores are
per-device families of controller.http.metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from controller.http.metrics import ExtraFamilies, Metric
from controller.monitoring.alerts import AlertLog
from controller.monitoring.offload_budget import OffloadBudgets


def monitoring_families(alerts: AlertLog, budgets: OffloadBudgets) -> ExtraFamilies:
    def collect() -> Iterator[Metric]:
        firing = GaugeMetricFamily(
            "edgefleet_alert_active",
            "1 for every open alert",
            labels=["rule", "subject", "device", "severity"],
        )
        by_rule: dict[str, int] = {}
        for a in alerts.active():
            firing.add_metric([a.rule, a.subject, a.device_id, a.severity], 1.0)
            by_rule[a.rule] = by_rule.get(a.rule, 0) + 1
        counts = GaugeMetricFamily(
            "edgefleet_alerts_active", "Open alerts by rule", labels=["rule"]
        )
        for rule, n in sorted(by_rule.items()):
            counts.add_metric([rule], float(n))
        budget = GaugeMetricFamily(
            "edgefleet_device_offload_budget_fps",
            "Drift-aware offload budget granted to the device (frames/s)",
            labels=["device"],
        )
        for device_id, fps in sorted(budgets.budgets().items()):
            budget.add_metric([device_id], fps)
        granted = GaugeMetricFamily(
            "edgefleet_offload_budget_granted_fps", "Sum of the granted budgets (frames/s)"
        )
        granted.add_metric([], budgets.granted_fps())
        yield from (firing, counts, budget, granted)

    return collect
