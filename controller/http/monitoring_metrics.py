"""The monitoring families of /metrics: drift per device, alert states, offload budgets.

Read at scrape time from the fleet monitor (drift scores over its window), the alert log
(open alerts) and the drift-aware offload budgets (controller.monitoring)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from controller.http.metrics import ExtraFamilies, Metric
from controller.monitoring.alerts import AlertLog
from controller.monitoring.monitor import FleetMonitor
from controller.monitoring.offload_budget import OffloadBudgets


def monitoring_families(
    monitor: FleetMonitor, alerts: AlertLog, budgets: OffloadBudgets
) -> ExtraFamilies:
    def collect() -> Iterator[Metric]:
        psi = GaugeMetricFamily(
            "edgefleet_device_drift_psi",
            "PSI of the window's confidence distribution against the variant's validation one",
            labels=["device"],
        )
        drop = GaugeMetricFamily(
            "edgefleet_device_agreement_drop",
            "Expected (validation) minus observed edge/cloud agreement over the window",
            labels=["device"],
        )
        for device_id, score in sorted(monitor.device_drift().items()):
            if score.psi is not None:
                psi.add_metric([device_id], score.psi)
            if score.agreement_drop is not None:
                drop.add_metric([device_id], score.agreement_drop)
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
        yield from (psi, drop, firing, counts, budget, granted)

    return collect
