"""The monitoring part of ``build_controller``: event log, alerts, drift-aware offload
budgets, the evaluation loop and the webhook, wired from the typed config.

``open_logs`` comes before the services (their listener lists get ``EventLog.record``),
``offload_budgets`` before the rollout service (it publishes through it), ``start_monitor``
after the rollout service; each registers what it starts on the controller's exit stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from controller.config import ControllerConfig
from controller.monitoring.alerts import AlertLog, AlertRules
from controller.monitoring.baselines import VariantBaselines
from controller.monitoring.events import EventLog
from controller.monitoring.monitor import FleetMonitor, MonitorConfig
from controller.monitoring.offload_budget import OffloadBudgets
from controller.monitoring.webhook import AlertWebhook
from controller.services.desired_overlay import DesiredPublisher
from controller.services.devices import Device
from controller.services.rollout_store import StoredRollout
from controller.services.telemetry import TelemetryStore
from controller.store.db import Database


@dataclass(frozen=True)
class MonitoringLogs:
    events: EventLog
    alerts: AlertLog


def open_logs(db: Database) -> MonitoringLogs:
    return MonitoringLogs(EventLog(db), AlertLog(db))


def offload_budgets(
    cfg: ControllerConfig, publisher: DesiredPublisher, logs: MonitoringLogs
) -> OffloadBudgets:
    budgets = OffloadBudgets(publisher, cfg.offload_ceiling_fps, [logs.events.record])
    budgets.restore(standing_grants(logs.events))
    return budgets


def standing_grants(events: EventLog) -> dict[str, float]:
    """Per device, the newest ``offload.budget`` event's grant (a previous run's)."""
    grants: dict[str, float] = {}
    for e in events.query(kinds=["offload.budget"], limit=10_000):  # newest first
        if e.device_id not in grants:
            grants[e.device_id] = float(e.data.get("new_fps") or 0.0)
    return grants


def monitor_config(cfg: ControllerConfig) -> MonitorConfig:
    return MonitorConfig(
        interval_s=cfg.alert_interval_s,
        window_s=cfg.alert_window_s,
        retention_s=cfg.event_retention_s,
        rules=AlertRules(
            accuracy_floor=cfg.alert_accuracy_floor, clear_after_s=cfg.alert_clear_after_s
        ),
    )


def start_monitor(
    cfg: ControllerConfig,
    stack: ExitStack,
    *,
    db: Database,
    logs: MonitoringLogs,
    devices: Callable[[], Sequence[Device]],
    telemetry: TelemetryStore,
    rollouts: Callable[[], Sequence[StoredRollout]],
    budgets: OffloadBudgets,
) -> FleetMonitor:
    monitor = FleetMonitor(
        monitor_config(cfg),
        devices=devices,
        telemetry=telemetry,
        rollouts=rollouts,
        baselines=VariantBaselines(db),
        alerts=logs.alerts,
        budgets=budgets,  # grants nothing while its ceiling is 0
    )
    monitor.events = logs.events
    monitor.event_listeners.append(logs.events.record)
    if cfg.alert_webhook:
        webhook = AlertWebhook(cfg.alert_webhook)
        webhook.start()
        stack.callback(webhook.stop)
        monitor.alert_listeners.append(webhook.notify)
    monitor.start()
    stack.callback(monitor.stop)
    return monitor
