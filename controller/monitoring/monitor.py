"""The fleet monitor: every ``interval_s`` it scores drift per device over the window,
evaluates the alert rules, opens and closes alerts, tells its listeners (event log, webhook)
and moves drift-aware offload budgets. A thin shell: the scores (``drift``), the rules
(``alerts``) and the budgets' ceiling arithmetic (``offload_budget``) are its pure parts.

API for the HTTP side and the CLI: ``FleetMonitor.device_drift(window_s)`` (``DriftScore``
per device), ``FleetMonitor.cohort_drift(device_ids, window_s)`` and ``evaluate_once()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller.monitoring.alerts import (
    Alert,
    AlertChanges,
    AlertLog,
    AlertRules,
    DeviceObservation,
    Finding,
    RolloutObservation,
    findings,
)
from controller.monitoring.drift import Baseline, DriftScore, drift_score
from controller.monitoring.events import EventListener, EventLog, FleetEvent, announce
from controller.monitoring.offload_budget import OffloadBudgets
from controller.monitoring.windows import VariantTotals, per_device, variant_totals
from controller.services.devices import Device
from controller.services.rollout_store import StoredRollout
from controller.services.telemetry import TelemetryStore, metrics_of
from controller.services.telemetry_math import Totals

log = logging.getLogger(__name__)

DRIFT_RULES = frozenset({"drift", "agreement_drop"})  # what raises a device's offload budget
AlertListener = Callable[[str, Alert], None]  # ("firing" | "resolved", alert)
BUDGET_HEADROOM = 1.5  # a drifting device's grant: half again its measured frame rate


@dataclass(frozen=True)
class DriftRow:
    """One line of the drift report: a device, or a cohort (the devices on one variant)."""

    kind: str  # device | cohort
    subject: str  # device id or variant id
    name: str
    variant_id: str
    devices: int
    score: DriftScore
    budget_fps: float


class BaselineSource(Protocol):
    """A variant's drift baseline (``VariantBaselines``: from its build record)."""

    def get(self, variant_id: str | None) -> Baseline | None: ...


@dataclass(frozen=True)
class MonitorConfig:
    interval_s: float = 5.0
    window_s: float = 60.0
    retention_s: float = 30 * 86400.0  # events, and alerts that ended, are kept this long
    prune_interval_s: float = 3600.0
    rules: AlertRules = field(default_factory=AlertRules)


class FleetMonitor:
    def __init__(
        self,
        config: MonitorConfig,
        *,
        devices: Callable[[], Sequence[Device]],
        telemetry: TelemetryStore,
        rollouts: Callable[[], Sequence[StoredRollout]],
        baselines: BaselineSource,
        alerts: AlertLog,
        budgets: OffloadBudgets | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._devices, self._telemetry, self._rollouts = devices, telemetry, rollouts
        self.baselines, self.alerts, self.budgets = baselines, alerts, budgets
        self._clock = clock
        self.events: EventLog | None = None  # pruned with the alerts, when given
        self._last_prune = 0.0
        self._scores: dict[str, DriftScore] = {}  # the latest evaluation's, by device
        self._scored_at = float("-inf")
        self.event_listeners: list[EventListener] = []
        self.alert_listeners: list[AlertListener] = []
        self.evaluations = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.active: Callable[[], bool] = lambda: True  # evaluates only while True (the leader)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fleet-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            if not self.active():
                continue
            try:
                self.evaluate_once()
            except Exception:  # the loop must outlive a database hiccup
                self.failures += 1
                log.exception("alert evaluation failed")

    # -- scores -----------------------------------------------------------------------------
    def _window(self, window_s: float | None) -> tuple[int, int]:
        now = int(self._clock() * 1000)
        return now - int((window_s or self.config.window_s) * 1000), now

    def _current(self, totals: VariantTotals) -> dict[str, tuple[str, Totals]]:
        """Per device: the variant it runs now (its newest report's) and that variant's sums
        in the window; reports of other variants (before a rollout, say) are left out."""
        newest: dict[str, tuple[str, Totals]] = {}
        for (device_id, variant), t in totals.items():
            if not t.reports:
                continue
            best = newest.get(device_id)
            if best is None or t.last_end_ms > best[1].last_end_ms:
                newest[device_id] = (variant, t)
        out: dict[str, tuple[str, Totals]] = {}
        for device_id, (variant, t) in newest.items():
            running = self._telemetry.device_variant(device_id)
            if running and (device_id, running) in totals:
                variant, t = running, totals[(device_id, running)]
            out[device_id] = (variant, t)
        return out

    def _score(self, variant: str, totals: Totals) -> DriftScore:
        return drift_score(self.baselines.get(variant or None), totals)

    def _totals(self, window_s: float | None) -> VariantTotals:
        since, until = self._window(window_s)
        return variant_totals(self._telemetry.db, since, until)

    def device_drift(self, window_s: float | None = None) -> dict[str, DriftScore]:
        """Scores per device over ``window_s``; over the configured window, the latest
        evaluation's (no database read) while it is at most two intervals old."""
        fresh = self._clock() - self._scored_at <= 2 * self.config.interval_s
        if window_s in (None, self.config.window_s) and fresh:
            return dict(self._scores)
        current = self._current(self._totals(window_s))
        return {d: self._score(v, t) for d, (v, t) in current.items()}

    def drift_report(self, window_s: float | None = None) -> list[DriftRow]:
        """Every reporting device's score, then one per cohort (devices on one variant)."""
        current = self._current(self._totals(window_s))
        names = {d.device_id: d.name for d in self._devices()}
        budgets = self.budgets.budgets() if self.budgets is not None else {}
        rows: list[DriftRow] = []
        cohorts: dict[str, list[str]] = {}
        for device_id, (variant, t) in sorted(current.items(),
                                              key=lambda kv: names.get(kv[0], kv[0])):  # fmt: skip
            cohorts.setdefault(variant, []).append(device_id)
            rows.append(DriftRow("device", device_id, names.get(device_id, ""), variant, 1,
                                 self._score(variant, t), budgets.get(device_id, 0.0)))  # fmt: skip
        for variant, ids in sorted(cohorts.items()):
            rows.append(DriftRow("cohort", variant, "", variant, len(ids),
                                 self.cohort_score(variant, [current[d][1] for d in ids]),
                                 sum(budgets.get(d, 0.0) for d in ids)))  # fmt: skip
        return rows

    def cohort_score(self, variant: str, totals: Sequence[Totals]) -> DriftScore:
        return self._score(variant, Totals.of(totals))

    def cohort_drift(self, device_ids: Sequence[str], window_s: float | None = None) -> DriftScore:
        """One score over the devices on the variant most of them run (its reports only)."""
        current = self._current(self._totals(window_s))
        by_variant: dict[str, list[Totals]] = {}
        for device_id in device_ids:
            if device_id in current:
                variant, t = current[device_id]
                by_variant.setdefault(variant, []).append(t)
        if not by_variant:
            return self._score("", Totals())
        variant = max(by_variant, key=lambda v: sum(t.frames for t in by_variant[v]))
        return self.cohort_score(variant, by_variant[variant])

    # -- one evaluation ---------------------------------------------------------------------
    def observe(self) -> tuple[list[DeviceObservation], list[RolloutObservation], int]:
        since, now = self._window(None)
        totals = variant_totals(self._telemetry.db, since, now)
        per, current = per_device(totals), self._current(totals)
        by_variant: dict[str, dict[str, Totals]] = {}
        for (device_id, variant_id), vt in totals.items():
            by_variant.setdefault(device_id, {})[variant_id] = vt
        devices = []
        for d in self._devices():
            t = per.get(d.device_id)
            reported = t is not None and t.reports > 0
            metrics = None
            if t is not None and reported:  # with the estimate `fleet status` shows
                metrics = metrics_of(t, 1, self._telemetry.accuracy_of(by_variant[d.device_id]))
            running = current.get(d.device_id)
            devices.append(
                DeviceObservation(
                    device_id=d.device_id,
                    name=d.name,
                    enrolled=d.state == "enrolled",
                    online=d.online,
                    last_seen_ms=d.last_seen_ms,
                    metrics=metrics,
                    drift=self._score(*running) if running is not None else None,
                )
            )
        rollouts = [
            RolloutObservation(
                r.rollout_id,
                f"{r.spec.model}:{r.spec.version}",
                r.state.phase,
                r.state.history[-1].reason if r.state.history else "",
            )
            for r in _newest_per_model(self._rollouts())
        ]
        return devices, rollouts, now

    def evaluate_once(self) -> AlertChanges:
        devices, rollouts, now = self.observe()
        self._scores = {d.device_id: d.drift for d in devices if d.drift is not None}
        self._scored_at = self._clock()
        found = findings(self.config.rules, devices, rollouts, now)
        changes = self.alerts.apply(found, self.config.rules.clear_after_s)
        self.evaluations += 1
        for alert in changes.fired:
            self._tell("firing", alert)
        for alert in changes.resolved:
            self._tell("resolved", alert)
        if self.budgets is not None:
            self._move_budgets(devices, found)
        if self._clock() - self._last_prune >= self.config.prune_interval_s:
            self.prune()
        return changes

    def prune(self) -> None:
        """Drop events and ended alerts past the retention."""
        self._last_prune = self._clock()
        cutoff = int((self._clock() - self.config.retention_s) * 1000)
        gone = self.alerts.prune(cutoff)
        if self.events is not None:
            gone += self.events.prune(cutoff)
        if gone:
            log.info("monitoring retention: %d events and ended alerts deleted", gone)

    def _tell(self, status: str, alert: Alert) -> None:
        verb = "fired" if status == "firing" else "resolved"
        level = logging.WARNING if status == "firing" else logging.INFO
        log.log(level, "alert %s %s on %s: %s", alert.rule, verb, alert.subject, alert.message)
        evidence = alert.evidence if status == "firing" else alert.last_evidence
        announce(
            self.event_listeners,
            FleetEvent(
                f"alert.{verb}",
                f"{alert.rule} {verb}: {alert.message}",
                device_id=alert.device_id,
                subject=alert.rule,
                data={"alert_id": alert.alert_id, "severity": alert.severity, **evidence},
            ),
        )
        for listener in self.alert_listeners:
            try:
                listener(status, alert)
            except Exception:
                log.exception("alert listener failed")

    def _move_budgets(self, devices: Sequence[DeviceObservation], found: Sequence[Finding]) -> None:
        """Drift on an online device: raise its budget to half again its frame rate (every
        frame, as its confidence no longer tells hard from easy, with room for the rate to
        vary; within the ceiling); the drift's alert ended (no open drift alert) or the device
        went offline: lower it. A device that stopped still drifts over its window's reports,
        and a grant to it would hold the fleet's ceiling away from devices that run."""
        assert self.budgets is not None
        drifting = {f.device_id for f in found if f.rule in DRIFT_RULES}
        open_drift = {a.device_id for a in self.alerts.active() if a.rule in DRIFT_RULES}
        by_id = {d.device_id: d for d in devices}
        for device_id in sorted(drifting):
            d = by_id.get(device_id)
            fps = d.metrics.frames_per_s if d is not None and d.metrics is not None else None
            if fps and d is not None and d.online:
                rules = sorted({f.rule for f in found if f.device_id == device_id} & DRIFT_RULES)
                self.budgets.raise_to(device_id, fps * BUDGET_HEADROOM, "+".join(rules))
        for device_id in self.budgets.raised():
            d = by_id.get(device_id)
            if d is None or not d.online:
                self.budgets.lower(device_id, "device offline")
            elif device_id not in open_drift and device_id not in drifting:
                self.budgets.lower(device_id, "drift ended")


def _newest_per_model(rollouts: Sequence[StoredRollout]) -> list[StoredRollout]:
    """A halted rollout stays alerting until a newer rollout of its model supersedes it."""
    newest: dict[str, StoredRollout] = {}
    for r in rollouts:
        old = newest.get(r.spec.model)
        if old is None or r.created_ms > old.created_ms:
            newest[r.spec.model] = r
    return list(newest.values())
