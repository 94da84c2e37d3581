"""The fleet event log: operator actions and fleet events, stored, queryable.

Services announce what happened to their listener lists (``DeviceRegistry.listeners``,
``BuildRunner.listeners``, ``RolloutService.listeners``, the alert evaluator); the assembly
appends ``EventLog.record`` to each, so an event is written where it happens, never polled.

Python API (the dashboard, the CLI's gRPC servicer and the tests read it):

    EventLog(db, clock=time.time)
    EventLog.record(event: FleetEvent) -> None            # a listener: never raises
    EventLog.query(since_ms: int = 0, kinds: Sequence[str] = (), device: str = "",
                   limit: int = 200) -> list[StoredEvent]  # newest first
    StoredEvent.to_dict() -> dict                          # JSON-ready

Kinds are dotted, noun first: ``device.registered``, ``device.enrolled``, ``device.labelled``,
``device.revoked``, ``model.built``, ``model.build_failed``, ``rollout.started``,
``rollout.phase``, ``rollout.gate``, ``rollout.rollback``, ``rollout.command``,
``alert.fired``, ``alert.resolved``, ``offload.budget``. A ``kinds`` filter entry ending in
``.`` (or a bare noun, e.g. ``rollout``) matches every kind of that noun.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from controller.store.db import Database, delete_in_batches
from controller.store.models_monitoring import FleetEventRow

log = logging.getLogger(__name__)

MAX_QUERY_LIMIT = 10_000
MAX_MESSAGE_CHARS = 1000
MAX_SUBJECT_CHARS = 256
MAX_DEVICE_CHARS = 128
MAX_KIND_CHARS = 64


@dataclass(frozen=True)
class FleetEvent:
    """What a service announces (its listeners receive this value)."""

    kind: str
    message: str
    device_id: str = ""
    subject: str = ""  # model ref, rollout id, alert rule...: what the event is about
    data: Mapping[str, Any] = field(default_factory=dict)
    unix_ms: int = 0  # 0: the log stamps it when it records it


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    unix_ms: int
    kind: str
    device_id: str
    subject: str
    message: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "unix_ms": self.unix_ms,
            "kind": self.kind,
            "device_id": self.device_id,
            "subject": self.subject,
            "message": self.message,
            "data": dict(self.data),
        }


EventListener = Callable[[FleetEvent], None]


def announce(listeners: Sequence[EventListener], event: FleetEvent) -> None:
    """Tell every listener; one failing listener neither stops the others nor the caller."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("event listener failed on %s", event.kind)


class EventLog:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self.write_errors = 0

    def record(self, event: FleetEvent) -> None:
        """Store one event (a listener: a database failure is logged and counted, not raised)."""
        row = FleetEventRow(
            unix_ms=event.unix_ms or int(self._clock() * 1000),
            kind=event.kind[:MAX_KIND_CHARS],
            device_id=event.device_id[:MAX_DEVICE_CHARS],
            subject=event.subject[:MAX_SUBJECT_CHARS],
            message=event.message[:MAX_MESSAGE_CHARS],
            data=_json_safe(event.data),
        )
        try:
            with self._db.session() as s:
                s.add(row)
        except Exception:
            self.write_errors += 1
            log.warning("event %s not stored", event.kind, exc_info=True)

    def prune(self, older_than_ms: int) -> int:
        """Delete events before ``older_than_ms`` (the retention), in bounded batches."""
        r = FleetEventRow
        return delete_in_batches(self._db, (r.event_id,), r.unix_ms < older_than_ms)

    def query(
        self,
        since_ms: int = 0,
        kinds: Sequence[str] = (),
        device: str = "",
        limit: int = 200,
    ) -> list[StoredEvent]:
        """Events at or after ``since_ms``, newest first, at most ``limit``."""
        r = FleetEventRow
        stmt = select(r).where(r.unix_ms >= since_ms)
        if kinds:
            stmt = stmt.where(or_(*(_kind_clause(k) for k in kinds)))
        if device:
            stmt = stmt.where(r.device_id == device)
        stmt = stmt.order_by(r.unix_ms.desc(), r.event_id.desc())
        stmt = stmt.limit(max(1, min(int(limit), MAX_QUERY_LIMIT)))
        with self._db.session() as s:
            return [
                StoredEvent(
                    row.event_id,
                    row.unix_ms,
                    row.kind,
                    row.device_id,
                    row.subject,
                    row.message,
                    dict(row.data or {}),
                )
                for row in s.scalars(stmt)
            ]


def _kind_clause(kind: str) -> Any:
    noun = kind.rstrip(".")
    if kind.endswith(".") or "." not in kind:
        return or_(FleetEventRow.kind == noun, FleetEventRow.kind.startswith(noun + "."))
    return FleetEventRow.kind == kind


def _json_safe(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or isinstance(value, bool | int | str):
            out[str(key)] = value
        elif isinstance(value, float):
            out[str(key)] = value if value == value and abs(value) != float("inf") else None
        elif isinstance(value, Mapping):
            out[str(key)] = _json_safe(value)
        elif isinstance(value, list | tuple):
            out[str(key)] = [_json_safe({"v": v})["v"] for v in value]
        else:
            out[str(key)] = str(value)
    return out
