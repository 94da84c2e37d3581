"""Leader election among controller replicas that share one PostgreSQL database.

Every replica serves the gRPC APIs and ingests telemetry; singleton work (rollout ticks,
timestamp re-signing, telemetry pruning, the monitor, the audit planner, the presence sweep)
runs only on the replica holding the lease.

Why a lease row with a fencing token rather than a session advisory lock: an advisory lock
lives as long as one database connection, so it cannot fence a write made on another pooled
connection, it does not survive a transaction-mode pooler (PgBouncer), and a half-open TCP
connection keeps it held until the server's keepalive notices (minutes). A lease row
``(holder, epoch, expires_ms)`` in ``controller_leases`` has a bounded takeover: the lease runs
out ``lease_s`` after the last renewal and a follower, polling every ``poll_interval_s``, takes
it over with ``epoch + 1``. A write that must come from the leader calls :meth:`Leadership.fence`
in its own transaction: the lease row is read ``FOR SHARE`` (holder, epoch and expiry checked
against the database clock), so a takeover waits for that transaction to commit and a deposed
leader's late write is refused with :class:`~controller.errors.StaleWrite`. Times are the
database server's clock (one clock for every replica); the local view of leadership ends
``lease_s`` after the renewal was *sent*, so it ends before the database lets anyone else in.

SQLite means one process: :class:`SoleLeader` always leads and fences nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text

from controller.errors import StaleWrite
from controller.store.db import Database
from controller.store.models_replicas import LeaseRow

log = logging.getLogger(__name__)

LEASE_NAME = "singleton"
_T = LeaseRow.__tablename__  # controller_leases
_NOW_MS = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"

_ACQUIRE = text(f"""
INSERT INTO {_T} (name, holder, epoch, expires_ms, renewed_ms)
VALUES (:name, :holder, 1, {_NOW_MS} + :lease_ms, {_NOW_MS})
ON CONFLICT (name) DO UPDATE SET
    epoch = CASE
        WHEN {_T}.holder = :holder AND {_T}.expires_ms > {_NOW_MS}
        THEN {_T}.epoch ELSE {_T}.epoch + 1 END,
    holder = :holder,
    expires_ms = {_NOW_MS} + :lease_ms,
    renewed_ms = {_NOW_MS}
WHERE {_T}.holder = :holder OR {_T}.expires_ms <= {_NOW_MS}
RETURNING epoch
""")
_FENCE = text(f"""
SELECT epoch FROM {_T}
WHERE name = :name AND holder = :holder AND epoch = :epoch AND expires_ms > {_NOW_MS}
FOR SHARE
""")
_RELEASE = text(
    f"UPDATE {_T} SET expires_ms = 0 WHERE name = :name AND holder = :holder AND epoch = :epoch"
)


def default_replica_id() -> str:
    """``hostname-pid-random``: unique per process (configure a stable one per replica)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Leader(Protocol):
    """What singleton loops and fenced writes see of leader election."""

    @property
    def is_leader(self) -> bool: ...

    def fence(self, session: Any) -> None:
        """In the caller's transaction: StaleWrite unless this replica holds the lease."""


class SoleLeader:
    """The one process on SQLite: always the leader, nothing to fence."""

    replica_id = "sole"
    epoch = 0
    is_leader = True

    def fence(self, session: Any) -> None:
        del session

    def wait_leader(self, timeout: float) -> bool:
        del timeout
        return True


@dataclass(frozen=True)
class LeaseConfig:
    lease_s: float = 10.0

    @property
    def renew_interval_s(self) -> float:
        return self.lease_s / 3

    @property
    def poll_interval_s(self) -> float:
        """How often a follower tries to take over: the takeover comes at most this late."""
        return min(1.0, self.lease_s / 3)


class Leadership:
    """The lease of one replica (``holder`` = replica id plus a per-process nonce, so a
    restarted replica with the same id starts a new term). ``try_acquire`` is one round;
    ``start`` runs rounds on a thread. Listeners hear ``True`` when this replica starts
    leading and ``False`` when it stops."""

    def __init__(
        self,
        db: Database,
        replica_id: str,
        config: LeaseConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.replica_id = replica_id
        self.holder = f"{replica_id}/{secrets.token_hex(4)}"
        self.config = config or LeaseConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._valid_until = 0.0
        self._was_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition(self._lock)
        self.listeners: list[Callable[[bool], None]] = []

    @property
    def epoch(self) -> int | None:
        """The fencing token of the current term (None while following)."""
        with self._lock:
            return self._epoch if self._clock() < self._valid_until else None

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None

    def try_acquire(self) -> bool:
        """Renew the lease, or take it over when it has run out. True when this replica
        leads now. A database error is logged and counts as not renewed."""
        sent = self._clock()
        try:
            with self._db.engine.begin() as conn:
                row = conn.execute(
                    _ACQUIRE,
                    {
                        "name": LEASE_NAME,
                        "holder": self.holder,
                        "lease_ms": int(self.config.lease_s * 1000),
                    },
                ).first()
        except Exception as exc:  # the loop must outlive a database hiccup
            log.warning("leader lease round failed (%s): %s", self.replica_id, exc)
            row = None
            leading = self.is_leader  # still ours until the local deadline
        else:
            with self._lock:
                if row is None:
                    self._epoch, self._valid_until = None, 0.0
                else:
                    if self._epoch != int(row[0]):
                        log.info("replica %s leads (epoch %d)", self.replica_id, int(row[0]))
                    self._epoch = int(row[0])
                    self._valid_until = sent + self.config.lease_s
            leading = row is not None
        self._notify(leading)
        return leading

    def fence(self, session: Any) -> None:
        epoch = self.epoch
        if epoch is None:
            raise StaleWrite(f"replica {self.replica_id} is not the leader")
        found = session.execute(
            _FENCE, {"name": LEASE_NAME, "holder": self.holder, "epoch": epoch}
        ).first()
        if found is None:
            with self._lock:
                self._epoch, self._valid_until = None, 0.0
            raise StaleWrite(f"replica {self.replica_id} lost the lease (epoch {epoch})")

    def release(self) -> None:
        """Give the lease up now (a clean stop), so a follower takes over at its next poll."""
        with self._lock:
            epoch, self._epoch, self._valid_until = self._epoch, None, 0.0
        if epoch is None:
            return
        try:
            with self._db.engine.begin() as conn:
                conn.execute(_RELEASE, {"name": LEASE_NAME, "holder": self.holder, "epoch": epoch})
            log.info("replica %s released the lease (epoch %d)", self.replica_id, epoch)
        except Exception as exc:  # it runs out by itself
            log.warning("releasing the leader lease failed: %s", exc)
        self._notify(False)

    def wait_leader(self, timeout: float) -> bool:
        deadline = self._clock() + timeout
        with self._changed:
            while not self._was_leader:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
        return True

    # -- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self.try_acquire()
        self._thread = threading.Thread(target=self._run, name="leader-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            leading = self.try_acquire()
            cfg = self.config
            self._stop.wait(cfg.renew_interval_s if leading else cfg.poll_interval_s)

    def _notify(self, leading: bool) -> None:
        with self._changed:
            if leading == self._was_leader:
                return
            self._was_leader = leading
            self._changed.notify_all()
        if not leading:
            log.warning("replica %s no longer leads", self.replica_id)
        for listener in self.listeners:
            try:
                listener(leading)
            except Exception:  # one listener must not keep the others from hearing
                log.exception("leadership listener failed")


def open_leadership(db: Database, replica_id: str, lease_s: float) -> Leadership | SoleLeader:
    """PostgreSQL: a started :class:`Leadership`; SQLite: :class:`SoleLeader`."""
    if not db.url.startswith("postgresql"):
        return SoleLeader()
    leadership = Leadership(db, replica_id, LeaseConfig(lease_s))
    leadership.start()
    return leadership
