"""Alerts: rules with defaults (pure), and the log of alerts with a start, an end and evidence.

Python API (the dashboard, /metrics, the CLI's gRPC servicer and the tests read it):

    AlertLog(db, clock=time.time)
    AlertLog.active() -> list[Alert]                                  # open, newest first
    AlertLog.history(since_ms: int = 0, limit: int = 200) -> list[Alert]  # any, newest first
    Alert.to_dict() -> dict                                           # JSON-ready
    Alert fields: alert_id, rule, subject, device_id, severity, message, started_ms,
                  ended_ms (None while active), evidence (values that fired it),
                  last_evidence (values at the latest evaluation or at the end)

Rules (``AlertRules`` holds their thresholds; ``findings`` evaluates them): ``drift`` (PSI of
the confidence distribution), ``agreement_drop`` (edge-cloud agreement well under its
validation value), ``accuracy_low`` (estimated accuracy's upper bound under a floor),
``offload_failures``, ``device_offline``, ``rollout_halted``. A rule's alert opens at the
first evaluation that finds it and closes after ``clear_after_s`` without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from controller.monitoring.drift import DriftScore
from controller.services.telemetry import CohortMetrics
from controller.store.db import Database, delete_in_batches
from controller.store.models_monitoring import AlertRow

RULES = (
    "drift", "agreement_drop", "accuracy_low", "offload_failures", "device_offline",
    "rollout_halted",
)  # fmt: skip


@dataclass(frozen=True)
class AlertRules:
    """Thresholds of the alert rules (each also needs enough evidence in the window)."""

    psi_max: float = 0.25  # PSI >= this: a major shift of the confidence distribution
    psi_min_frames: int = 300  # frames in the window's confidence histogram
    agreement_margin: float = 0.15  # observed agreement's 95% upper bound this far below
    agreement_min_pairs: int = 20
    accuracy_floor: float = 0.0  # 0: off (the estimate's upper bound below it fires)
    accuracy_min_frames: int = 300
    offload_failure_max: float = 0.2
    offload_failure_min: int = 50  # offloaded frames in the window
    offline_after_s: float = 60.0  # enrolled, seen before, silent this long
    clear_after_s: float = 30.0  # an alert ends after this long without a finding

    def __post_init__(self) -> None:
        if self.psi_max <= 0 or not 0 <= self.agreement_margin <= 1:
            raise ValueError("psi_max must be > 0 and agreement_margin in [0, 1]")
        if not 0 <= self.accuracy_floor <= 1 or not 0 < self.offload_failure_max <= 1:
            raise ValueError("accuracy_floor must be in [0, 1], offload_failure_max in (0, 1]")
        if self.clear_after_s < 0 or self.offline_after_s <= 0:
            raise ValueError("clear_after_s must be >= 0 and offline_after_s > 0")


@dataclass(frozen=True)
class DeviceObservation:
    """What the evaluator knows of one device at one evaluation."""

    device_id: str
    name: str
    enrolled: bool
    online: bool
    last_seen_ms: int
    metrics: CohortMetrics | None  # over the window; None: no report in it
    drift: DriftScore | None


@dataclass(frozen=True)
class RolloutObservation:
    rollout_id: str
    model_ref: str
    phase: str
    reason: str


@dataclass(frozen=True)
class Finding:
    """A rule that holds now, with the values that made it hold."""

    rule: str
    subject: str
    message: str
    device_id: str = ""
    severity: str = "warning"
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject


def device_findings(rules: AlertRules, d: DeviceObservation, now_ms: int) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: str, message: str, severity: str = "warning", **evidence: Any) -> None:
        out.append(Finding(rule, d.device_id, f"{d.name}: {message}", d.device_id, severity,
                           evidence))  # fmt: skip

    silent_s = (now_ms - d.last_seen_ms) / 1000.0
    if d.enrolled and d.last_seen_ms > 0 and not d.online and silent_s >= rules.offline_after_s:
        add("device_offline", f"offline for {silent_s:.0f} s", silent_s=round(silent_s, 1))
    s, m = d.drift, d.metrics
    if (
        s is not None
        and s.psi is not None
        and s.confidence_frames >= rules.psi_min_frames
        and s.psi >= rules.psi_max
    ):
        add("drift", f"confidence distribution shifted (PSI {s.psi:.2f})", **s.to_dict())
    if (
        s is not None
        and s.expected_agreement is not None
        and s.agreement_pairs >= rules.agreement_min_pairs
        and s.agreement_high < s.expected_agreement - rules.agreement_margin
    ):
        add(
            "agreement_drop",
            f"edge-cloud agreement {s.agreement or 0:.2f} (validation {s.expected_agreement:.2f})",
            **s.to_dict(),
        )
    if m is None:
        return out
    acc = m.accuracy
    floor = rules.accuracy_floor
    enough = floor > 0 and m.frames >= rules.accuracy_min_frames
    if enough and acc.value is not None and acc.high < floor:
        add(
            "accuracy_low",
            f"estimated accuracy {acc.value:.2f} < {floor}",
            accuracy=round(acc.value, 4),
            accuracy_low=round(acc.low, 4),
            accuracy_high=round(acc.high, 4),
            floor=floor,
        )
    offloaded = round((m.offload_rate or 0.0) * m.frames)
    rate = m.offload_failure_rate
    if (
        rate is not None
        and offloaded >= rules.offload_failure_min
        and (rate > rules.offload_failure_max)
    ):
        add(
            "offload_failures",
            f"{rate:.0%} of offloads failed",
            offload_failure_rate=round(rate, 4),
            offloaded=offloaded,
            max=rules.offload_failure_max,
        )
    return out


def rollout_findings(rollouts: Sequence[RolloutObservation]) -> list[Finding]:
    return [
        Finding(
            "rollout_halted",
            r.rollout_id,
            f"rollout {r.rollout_id} of {r.model_ref} {r.phase}: {r.reason}".rstrip(": "),
            "",
            "critical",
            {"phase": r.phase, "reason": r.reason, "model": r.model_ref},
        )
        for r in rollouts
        if r.phase == "halted"
    ]


def findings(
    rules: AlertRules,
    devices: Sequence[DeviceObservation],
    rollouts: Sequence[RolloutObservation],
    now_ms: int,
) -> list[Finding]:
    """Every rule that holds now."""
    out = [f for d in devices for f in device_findings(rules, d, now_ms)]
    return out + rollout_findings(rollouts)


@dataclass(frozen=True)
class Alert:
    alert_id: int
    rule: str
    subject: str
    device_id: str
    severity: str
    message: str
    started_ms: int
    ended_ms: int | None
    evidence: Mapping[str, Any]
    last_evidence: Mapping[str, Any]

    @property
    def active(self) -> bool:
        return self.ended_ms is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule": self.rule,
            "subject": self.subject,
            "device_id": self.device_id,
            "severity": self.severity,
            "message": self.message,
            "started_ms": self.started_ms,
            "ended_ms": self.ended_ms,
            "active": self.active,
            "evidence": dict(self.evidence),
            "last_evidence": dict(self.last_evidence),
        }


def _alert(row: AlertRow) -> Alert:
    return Alert(
        row.alert_id, row.rule, row.subject, row.device_id, row.severity, row.message,
        row.started_ms, row.ended_ms, dict(row.evidence or {}), dict(row.last_evidence or {}),
    )  # fmt: skip


@dataclass(frozen=True)
class AlertChanges:
    fired: list[Alert]
    resolved: list[Alert]


class AlertLog:
    """Alerts in the database. ``apply`` (the evaluator's, one thread) opens, refreshes and
    closes them from one evaluation's findings; ``active``/``history`` read them."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._last_found: dict[tuple[str, str], int] = {}
        self._apply_lock = threading.Lock()  # one evaluation's changes at a time

    def active(self) -> list[Alert]:
        with self._db.session() as s:
            rows = s.scalars(
                select(AlertRow)
                .where(AlertRow.ended_ms.is_(None))
                .order_by(AlertRow.started_ms.desc(), AlertRow.alert_id.desc())
            )
            return [_alert(r) for r in rows]

    def history(self, since_ms: int = 0, limit: int = 200) -> list[Alert]:
        """Alerts open at or after ``since_ms`` (started later, or still open, or ended later)."""
        r = AlertRow
        with self._db.session() as s:
            rows = s.scalars(
                select(r)
                .where((r.started_ms >= since_ms) | r.ended_ms.is_(None) | (r.ended_ms >= since_ms))
                .order_by(r.started_ms.desc(), r.alert_id.desc())
                .limit(max(1, min(int(limit), 10_000)))
            )
            return [_alert(row) for row in rows]

    def prune(self, ended_before_ms: int) -> int:
        """Delete alerts that ended before ``ended_before_ms`` (open ones are kept)."""
        r = AlertRow  # in bounded batches
        return delete_in_batches(self._db, (r.alert_id,), r.ended_ms < ended_before_ms)

    def apply(self, found: Sequence[Finding], clear_after_s: float) -> AlertChanges:
        """Open an alert per new finding, refresh the evidence of open ones, close those not
        found for ``clear_after_s``. One transaction."""
        with self._apply_lock:
            return self._apply(found, clear_after_s)

    def _apply(self, found: Sequence[Finding], clear_after_s: float) -> AlertChanges:
        now = int(self._clock() * 1000)
        by_key = {f.key: f for f in found}
        for key in by_key:
            self._last_found[key] = now
        fired: list[AlertRow] = []
        resolved: list[AlertRow] = []
        with self._db.session() as s:
            open_rows = {(r.rule, r.subject): r for r in s.scalars(
                select(AlertRow).where(AlertRow.ended_ms.is_(None)))}  # fmt: skip
            for key, row in open_rows.items():
                if key in by_key:
                    row.last_evidence = dict(by_key[key].evidence)
                    row.message = by_key[key].message[:1000]
                    continue
                last = self._last_found.setdefault(key, row.started_ms)
                if now - last >= clear_after_s * 1000:
                    row.ended_ms = now
                    resolved.append(row)
                    self._last_found.pop(key, None)
            for key, f in by_key.items():
                if key not in open_rows:
                    row = AlertRow(
                        rule=f.rule, subject=f.subject[:256], device_id=f.device_id[:128],
                        severity=f.severity, message=f.message[:1000], started_ms=now,
                        ended_ms=None, evidence=dict(f.evidence), last_evidence=dict(f.evidence),
                    )  # fmt: skip
                    s.add(row)
                    fired.append(row)
            s.flush()
            return AlertChanges([_alert(r) for r in fired], [_alert(r) for r in resolved])
