"""Persistence of rollouts: spec and engine state, every event, per-device desired state.

One transaction per engine step (``save_step``) keeps the state, its events and the desired
state it produced consistent, so a controller killed between two steps restarts from the
last committed one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from controller.errors import StaleWrite
from controller.rollout import RolloutSpec, RolloutState
from controller.rollout.model import TERMINAL_PHASES
from controller.store.db import Database
from controller.store.models_rollouts import DesiredStateRow, RolloutEventRow, RolloutRow
from edgefleet.errors import InvalidInput, NotFound

# What a device's update report may hold: the columns it is stored in (desired_states).
MAX_REPORT_STATE = 16
MAX_REPORT_VARIANT = 256
MAX_REPORT_REASON = 2000


def check_report(state: str, variant_id: str, running_variant: str) -> None:
    """InvalidInput for a report field longer than its column (a device's report is stored,
    logged and read by every rollout step: it must not be megabytes)."""
    for name, value, limit in (
        ("state", state, MAX_REPORT_STATE),
        ("variant_id", variant_id, MAX_REPORT_VARIANT),
        ("current_variant", running_variant, MAX_REPORT_VARIANT),
    ):
        if len(value) > limit:
            raise InvalidInput(f"update report {name} longer than {limit} characters")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class StoredRollout:
    spec: RolloutSpec
    state: RolloutState
    created_ms: int
    updated_ms: int

    @property
    def rollout_id(self) -> str:
        return self.spec.rollout_id


@dataclass(frozen=True)
class Event:
    at_ms: int
    level: str
    message: str


@dataclass(frozen=True)
class Desired:
    """A device's desired state as stored and published (``to_dict`` is the wire JSON)."""

    device_id: str
    model: str = ""
    version: int = 0
    variant_id: str = ""
    target_path: str = ""
    sha256: str = ""
    length: int = 0
    target: Mapping[str, Any] | None = None
    rollout_id: str = ""
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["target"] = dict(self.target or {})
        return d


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    desired: Desired
    reported_state: str
    reported_variant: str
    reported_reason: str
    running_variant: str


def _desired(row: DesiredStateRow) -> Desired:
    return Desired(
        row.device_id, row.model, int(row.version), row.variant_id, row.target_path,
        row.sha256, int(row.length), dict(row.target or {}), row.rollout_id, int(row.revision),
    )  # fmt: skip


def _status(row: DesiredStateRow) -> DeviceStatus:
    return DeviceStatus(
        row.device_id, _desired(row), row.reported_state, row.reported_variant,
        row.reported_reason, row.running_variant,
    )  # fmt: skip


def _stored(row: RolloutRow) -> StoredRollout:
    return StoredRollout(
        RolloutSpec.from_dict(row.spec),
        RolloutState.from_dict(row.state),
        int(row.created_ms),
        int(row.updated_ms),
    )


class RolloutStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- rollouts ---------------------------------------------------------------------------
    def create(self, spec: RolloutSpec, state: RolloutState) -> StoredRollout:
        at = now_ms()
        with self._db.session() as s:
            s.add(
                RolloutRow(
                    rollout_id=spec.rollout_id, model=spec.model, version=spec.version,
                    phase=state.phase, spec=spec.to_dict(), state=state.to_dict(),
                    created_ms=at, updated_ms=at,
                )
            )  # fmt: skip
            s.add(RolloutEventRow(rollout_id=spec.rollout_id, at_ms=at, level="info",
                                  message=f"created {spec.model} v{spec.version}"))  # fmt: skip
        return StoredRollout(spec, state, at, at)

    def get(self, rollout_id: str) -> StoredRollout:
        with self._db.session() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None:
                raise NotFound(f"no rollout {rollout_id!r}")
            return _stored(row)

    def rollouts(self, *, active_only: bool = False) -> list[StoredRollout]:
        with self._db.session() as s:
            query = select(RolloutRow).order_by(RolloutRow.created_ms)
            if active_only:
                query = query.where(RolloutRow.phase.not_in(sorted(TERMINAL_PHASES)))
            return [_stored(r) for r in s.scalars(query).all()]

    def events(self, rollout_id: str, limit: int = 200) -> list[Event]:
        with self._db.session() as s:
            rows = s.scalars(
                select(RolloutEventRow)
                .where(RolloutEventRow.rollout_id == rollout_id)
                .order_by(RolloutEventRow.event_id.desc())
                .limit(limit)
            ).all()
            return [Event(int(r.at_ms), r.level, r.message) for r in reversed(rows)]

    def save_step(
        self,
        rollout_id: str,
        state: RolloutState,
        events: Iterable[tuple[str, str]],
        desired: Iterable[Desired] = (),
        *,
        expected: RolloutState | None = None,
        fence: Callable[[Any], None] | None = None,
    ) -> list[Desired]:
        """Persist a step in one transaction; returns the desired states with new revisions.

        ``expected``: the state the step was computed from; when the stored one differs (a
        step of another replica came first) nothing is written and StaleWrite is raised, so
        the last writer never wins. ``fence(session)`` runs in the same transaction (the
        leader lease check) and refuses a deposed leader's write. The rollout row is locked
        (``FOR UPDATE`` on PostgreSQL) from the comparison to the commit."""
        at = now_ms()
        written: list[Desired] = []
        with self._db.session() as s:
            if fence is not None:
                fence(s)
            row = s.get(RolloutRow, rollout_id, with_for_update=True)
            if row is None:
                raise NotFound(f"no rollout {rollout_id!r}")
            if expected is not None and RolloutState.from_dict(row.state) != expected:
                raise StaleWrite(f"rollout {rollout_id} changed since this step read it")
            row.state, row.phase, row.updated_ms = state.to_dict(), state.phase, at
            for level, message in events:
                s.add(RolloutEventRow(rollout_id=rollout_id, at_ms=at, level=level,
                                      message=message))  # fmt: skip
            desired = list(desired)
            with s.no_autoflush:  # one SELECT per 1,000 devices, not a SELECT + flush each
                rows = _desired_rows(s, [d.device_id for d in desired])
                for d in desired:
                    if d.device_id not in rows:  # (a device twice in a step: one row)
                        rows[d.device_id] = DesiredStateRow(device_id=d.device_id, revision=0,
                                                            target={})  # fmt: skip
                        s.add(rows[d.device_id])
                    written.append(self._write_desired(d, at, rows[d.device_id]))
        return written

    # -- desired state and device reports ---------------------------------------------------
    @staticmethod
    def _write_desired(d: Desired, at: int, row: DesiredStateRow) -> Desired:
        revision = int(row.revision or 0) + 1
        row.model, row.version, row.variant_id = d.model, d.version, d.variant_id
        row.target_path, row.sha256, row.length = d.target_path, d.sha256, d.length
        row.target, row.rollout_id, row.revision = dict(d.target or {}), d.rollout_id, revision
        row.reported_state, row.reported_variant, row.reported_reason = "", "", ""
        row.updated_ms = at
        return Desired(**{**d.__dict__, "revision": revision})

    def desired(self, device_id: str) -> Desired | None:
        with self._db.session() as s:
            row = s.get(DesiredStateRow, device_id)
            return _desired(row) if row is not None and row.variant_id else None

    def statuses(self, device_ids: Iterable[str] | None = None) -> dict[str, DeviceStatus]:
        with self._db.session() as s:
            query = select(DesiredStateRow)
            if device_ids is not None:
                query = query.where(DesiredStateRow.device_id.in_(sorted(set(device_ids))))
            return {r.device_id: _status(r) for r in s.scalars(query).all()}

    def record_report(
        self,
        device_id: str,
        state: str,
        variant_id: str,
        reason: str,
        running_variant: str,
        revision: int,
    ) -> bool:
        """Store a device's latest update report. True when it changed what is stored; False
        for a repeat (every poll re-sends the last report) or one about an older revision."""
        with self._db.session() as s:
            row = s.get(DesiredStateRow, device_id)
            if row is None:
                row = DesiredStateRow(device_id=device_id, revision=0, target={})
                s.add(row)
            before = (row.running_variant, row.reported_state, row.reported_variant,
                      row.reported_reason)  # fmt: skip
            if running_variant:
                row.running_variant = running_variant
            stale = bool(revision) and revision != int(row.revision or 0)
            if not stale and state:
                row.reported_state, row.reported_variant = state, variant_id
                row.reported_reason = reason[:MAX_REPORT_REASON]
            after = (row.running_variant, row.reported_state, row.reported_variant,
                     row.reported_reason)  # fmt: skip
            if after != before:
                row.updated_ms = now_ms()
            return after != before


def _desired_rows(s: Any, device_ids: list[str]) -> dict[str, DesiredStateRow]:
    """The stored desired-state rows of these devices, read 1,000 ids a query."""
    out: dict[str, DesiredStateRow] = {}
    for i in range(0, len(device_ids), 1000):
        chunk = device_ids[i : i + 1000]
        query = select(DesiredStateRow).where(DesiredStateRow.device_id.in_(chunk))
        out.update((r.device_id, r) for r in s.scalars(query))
    return out
