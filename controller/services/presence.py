"""Presence writes coalesced, and a short-lived cache of certificate -> device.

A fleet heartbeats every few seconds over gRPC and MQTT. Writing each heartbeat as its own
SELECT + UPDATE costs the database a transaction per device per interval; instead the latest
sign of life per device waits in memory and one batched UPDATE (an executemany in one
transaction) stores every device heard from since the last flush. Reads of the registry flush
first, so this process always reads what it was told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import bindparam, case, update

from controller.store.db import Database
from controller.store.models import DeviceRow

log = logging.getLogger(__name__)
MAX_PENDING = 100_000  # devices waiting for the next flush; beyond it the caller flushes

_UPDATE = (
    update(DeviceRow.__table__)  # type: ignore[arg-type]
    .where(DeviceRow.device_id == bindparam("b_id"), DeviceRow.state == "enrolled")
    .values(
        online=bindparam("b_online"),
        last_seen_ms=case(
            (DeviceRow.last_seen_ms > bindparam("b_seen"), DeviceRow.last_seen_ms),
            else_=bindparam("b_seen"),
        ),
        agent_version=case(
            (bindparam("b_version") == "", DeviceRow.agent_version), else_=bindparam("b_version")
        ),
    )
)


@dataclass
class _Seen:
    online: bool
    seen_ms: int
    agent_version: str


class PresenceBuffer:
    """The latest presence per device, stored by :meth:`flush` in one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._pending: dict[str, _Seen] = {}
        self.flushes = 0
        self.rows_written = 0

    def add(self, device_id: str, *, online: bool, seen_ms: int, agent_version: str) -> int:
        """Remember a sign of life; returns how many devices wait for the next flush."""
        with self._lock:
            old = self._pending.get(device_id)
            if old is None:
                self._pending[device_id] = _Seen(online, seen_ms, agent_version)
            else:  # the latest state, the latest time, the latest version told
                old.online = online
                old.seen_ms = max(old.seen_ms, seen_ms)
                old.agent_version = agent_version or old.agent_version
            return len(self._pending)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Store every waiting presence with one batched UPDATE; returns the devices written.
        A failed flush puts its entries back (newer ones win) and raises."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            params = [  # by id: every writer of many device rows locks them in one order
                {"b_id": d, "b_online": s.online, "b_seen": s.seen_ms, "b_version": s.agent_version}
                for d, s in sorted(batch.items())
            ]
            try:
                with self._db.session() as session:
                    session.connection().execute(_UPDATE, params)
            except BaseException:
                with self._lock:
                    for device_id, seen in batch.items():
                        self._pending.setdefault(device_id, seen)
                raise
            self.flushes += 1
            self.rows_written += len(params)
            return len(params)

    def flush_before_read(self) -> None:
        """Flush for a reader; a failed flush (a deadlock with another writer of the rows) is
        logged and left for the next, never the reader's error: its entries are kept."""
        try:
            self.flush()
        except Exception as exc:  # StoreError: the entries went back into the buffer
            log.warning("presence flush before a read failed (kept for the next): %s", exc)

    def run(
        self, stopped: threading.Event, interval_s: float, on_error: Callable[[], None]
    ) -> None:
        """Flush every ``interval_s`` until ``stopped``, then once more."""
        while not stopped.wait(interval_s):
            try:
                self.flush()
            except Exception:  # must outlive a database hiccup: entries wait for the next
                on_error()
        self.flush()


T = TypeVar("T")


class TtlCache(Generic[T]):
    """A bounded map whose entries live ``ttl_s`` seconds; ``discard`` drops one at once."""

    def __init__(
        self, ttl_s: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        if self._ttl_s <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: str, value: T) -> None:
        if self._ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # bounded; the next calls read the database again
            self._entries[key] = (self._clock() + self._ttl_s, value)

    def discard_where(self, matches: Callable[[T], bool]) -> None:
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if matches(v)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
