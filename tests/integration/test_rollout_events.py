"""Rollouts tell the event log what happened, where it happens (RolloutService.listeners):
start, phase transitions, gate decisions, operator commands and rollbacks; and the fleet
monitor alerts on a halted rollout until it is no longer halted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.monitoring.alerts import AlertLog
from controller.monitoring.events import EventLog
from controller.monitoring.monitor import FleetMonitor, MonitorConfig
from controller.services.rollouts import RolloutService
from controller.services.telemetry import TelemetryStore
from controller.store.db import Database
from tests.integration.test_rollout_gate_wait_and_abort import Metrics, Publisher, _install, _start
from tests.integration.test_rollouts_persistence import DEVICES, Clock, Variants


def test_rollout_events_and_the_halted_alert(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    clock, metrics = Clock(), Metrics(pre="silent")

    def list_devices(selector: Mapping[str, str]) -> list[Any]:
        return list(DEVICES)

    svc = RolloutService(db, list_devices, Variants(), metrics=metrics, publisher=Publisher(),
                         clock=clock)  # fmt: skip
    log = EventLog(db)
    svc.listeners.append(log.record)
    for d in DEVICES:
        svc.report(d.device_id, "", "", "", "m:1:fp32", 0)
    rid = _start(svc, metrics, gate_timeout_seconds=60)
    _install(svc, [d.device_id for d in DEVICES])
    for step in (0, 6, 50, 20):  # the silent baseline holds the gate until its timeout
        clock.now += step
        svc.tick()
    assert svc.get(rid).state.phase == "halted"

    events = log.query(kinds=["rollout"])
    kinds = {e.kind for e in events}
    assert {"rollout.started", "rollout.phase", "rollout.gate"} <= kinds
    halt = next(e for e in events if e.kind == "rollout.phase" and e.data["to"] == "halted")
    assert halt.subject == rid and "gate timeout" in halt.message
    gates = {e.data["metric"]: e.data["status"] for e in events if e.kind == "rollout.gate"}
    assert gates["error_rate"] == "pass" and gates["p95_latency"] == "insufficient"

    monitor = FleetMonitor(
        MonitorConfig(), devices=lambda: [], telemetry=TelemetryStore(db),
        rollouts=svc.rollouts, baselines={}, alerts=AlertLog(db),  # type: ignore[arg-type]
    )  # fmt: skip
    monitor.event_listeners.append(log.record)
    fired = monitor.evaluate_once().fired
    assert [(a.rule, a.subject, a.severity) for a in fired] == [("rollout_halted", rid, "critical")]

    # the operator rolls it back: a command, a rollback per device, the phase leaves halted
    svc.command(rid, "rollback", "gates never saw data")
    kinds_now = [e.kind for e in log.query(kinds=["rollout.command", "rollout.rollback"])]
    assert kinds_now.count("rollout.rollback") == len(DEVICES) and "rollout.command" in kinds_now
    monitor.config = MonitorConfig(rules=monitor.config.rules.__class__(clear_after_s=0))
    assert [a.rule for a in monitor.evaluate_once().resolved] == ["rollout_halted"]
    assert [e.kind for e in log.query(kinds=["alert"])] == ["alert.resolved", "alert.fired"]
    db.close()


def test_retention_prunes_old_events_and_ended_alerts_not_open_ones(tmp_path: Path) -> None:
    from controller.monitoring.alerts import Finding
    from controller.monitoring.events import FleetEvent

    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    now = [1_000_000.0]
    events, alerts = EventLog(db, clock=lambda: now[0]), AlertLog(db, clock=lambda: now[0])
    events.record(FleetEvent("device.enrolled", "old"))
    alerts.apply([Finding("drift", "a", "old"), Finding("drift", "b", "still open")], 0)
    alerts.apply([Finding("drift", "b", "still open")], 0)  # a ends
    now[0] += 40 * 86400
    events.record(FleetEvent("device.enrolled", "new"))
    monitor = FleetMonitor(
        MonitorConfig(retention_s=30 * 86400), devices=lambda: [], telemetry=TelemetryStore(db),
        rollouts=lambda: [], baselines={}, alerts=alerts, clock=lambda: now[0],  # type: ignore[arg-type]
    )  # fmt: skip
    monitor.events = events
    monitor.prune()
    assert [e.message for e in events.query()] == ["new"]
    assert [a.subject for a in alerts.history()] == ["b"]
    db.close()


def test_a_restarted_controller_lowers_grants_a_previous_run_left(tmp_path: Path) -> None:
    import json

    from controller.monitoring.assembly import standing_grants
    from controller.monitoring.offload_budget import OffloadBudgets

    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    log = EventLog(db)
    before = OffloadBudgets(None, 30.0, [log.record])  # the previous run
    before.raise_to("dev-a", 20.0, "drift")
    before.raise_to("dev-b", 5.0, "drift")
    before.lower("dev-b", "drift ended")
    assert standing_grants(log) == {"dev-a": 20.0, "dev-b": 0.0}

    sent: list[tuple[str, dict]] = []

    class Publisher:
        def publish_desired(self, device_id: str, payload: bytes, timeout: float | None = None):
            sent.append((device_id, json.loads(payload)))

    after = OffloadBudgets(Publisher(), 30.0, [log.record])
    after.restore(standing_grants(log))
    assert after.budgets() == {"dev-a": 20.0}
    monitor = FleetMonitor(
        MonitorConfig(), devices=lambda: [], telemetry=TelemetryStore(db), rollouts=lambda: [],
        baselines={}, alerts=AlertLog(db), budgets=after,  # type: ignore[arg-type]
    )  # fmt: skip
    monitor.evaluate_once()  # no drift on dev-a any more: its retained grant goes to 0
    assert sent == [("dev-a", {"device_id": "dev-a", "offload_max_fps": 0.0})]
    assert standing_grants(log)["dev-a"] == 0.0
    db.close()


def test_drift_is_scored_over_the_variant_the_device_runs_now(tmp_path: Path) -> None:
    """A rollout inside the window: the old variant's reports are not mixed into the new
    one's histogram (mixed, they read PSI > 2 here)."""
    import time

    from controller.monitoring.drift import Baseline
    from controller.services.telemetry_math import INF, ReportSample

    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    store = TelemetryStore(db)
    store.start()
    now = int(time.time() * 1000)
    confident, unsure = {0.95: 0, INF: 500}, {0.45: 0, 0.5: 500}
    for seq, (variant, hist) in enumerate([("m:1:a", confident), ("m:2:b", unsure)]):
        store.submit(ReportSample("dev-1", now - 20_000 + seq * 10_000, now - 10_000 + seq * 10_000,
                                  "m", variant, seq, {"frames": 500}, confidence=hist))  # fmt: skip
    assert store.flush(10)
    counts_a, counts_b = [0] * 20, [0] * 20
    counts_a[19], counts_b[9] = 100, 100
    baselines = {"m:1:a": Baseline(tuple(counts_a), tuple(counts_a)),
                 "m:2:b": Baseline(tuple(counts_b), tuple(counts_b))}  # fmt: skip
    monitor = FleetMonitor(
        MonitorConfig(), devices=lambda: [], telemetry=store, rollouts=lambda: [],
        baselines=baselines, alerts=AlertLog(db),  # type: ignore[arg-type]
    )  # fmt: skip
    score = monitor.device_drift()["dev-1"]
    assert score.frames == 500 and score.psi == pytest.approx(0.0, abs=1e-6)
    store.stop()
    db.close()


def test_offload_grants_go_to_online_drifting_devices_only(tmp_path: Path) -> None:
    """A stopped device still drifts over its window's reports: granting it budget would hold
    the fleet's ceiling away from the devices that run, so it gets none and loses what it had."""
    from dataclasses import replace

    from controller.monitoring.alerts import DeviceObservation, Finding
    from controller.monitoring.offload_budget import OffloadBudgets
    from controller.services.telemetry import metrics_of
    from controller.services.telemetry_math import Totals

    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    budgets = OffloadBudgets(None, 30.0, [])
    monitor = FleetMonitor(
        MonitorConfig(), devices=lambda: [], telemetry=TelemetryStore(db), rollouts=lambda: [],
        baselines={}, alerts=AlertLog(db), budgets=budgets,  # type: ignore[arg-type]
    )  # fmt: skip
    metrics = replace(metrics_of(Totals(), 1), frames_per_s=20.0)

    def seen(device_id: str, online: bool) -> DeviceObservation:
        return DeviceObservation(device_id, device_id, True, online, 0, metrics, None)

    drift = [Finding("drift", d, "shifted", device_id=d) for d in ("a-stopped", "b-running")]
    monitor._move_budgets([seen("a-stopped", False), seen("b-running", True)], drift)
    assert budgets.budgets() == {"b-running": 30.0}  # 1.5 x 20 frames/s, the whole ceiling
    monitor._move_budgets([seen("b-running", False)], drift[1:])  # it stops as well
    assert budgets.budgets() == {}
    db.close()
