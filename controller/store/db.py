"""Database engine, migrations at start, and the session scope every repository uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, create_engine, delete, event, select, text, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from controller.errors import StoreError

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key held while migrating: replicas starting at once upgrade one by one
MIGRATION_LOCK_KEY = 0x45444745464C4554  # "EDGEFLET"
TUF_LOCK_KEY = 0x4546545546  # "EFTUF": changes to the TUF repository replicas share
PRUNE_BATCH = 5000  # rows one retention DELETE removes; the next batch is its own transaction
POOL_OVERFLOW = 8  # connections beyond pool_size for a burst (operator calls, a slow loop)


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """The URL without its password, for log lines and errors."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class Database:
    """One engine per process. ``migrate()`` brings the schema to every Alembic head."""

    def __init__(self, url: str, *, connect_timeout_s: int = 10, pool_size: int = 0) -> None:
        """``pool_size`` > 0: connections kept per process (PostgreSQL), plus
        POOL_OVERFLOW opened for a burst; a caller waits at most ``connect_timeout_s`` for one.
        Size it to the threads that use the database at once (the gRPC workers and the
        background loops): SQLAlchemy's default 5 + 10 queued 32 workers behind 15."""
        self.url = normalize_url(url)
        connect_args: dict[str, object] = {}
        pooling: dict[str, object] = {}
        if self.url.startswith("sqlite"):
            connect_args = {"check_same_thread": False, "timeout": 30}
        elif self.url.startswith("postgresql"):
            connect_args = {"connect_timeout": connect_timeout_s}
            if pool_size > 0:
                pooling = {
                    "pool_size": pool_size,
                    "max_overflow": POOL_OVERFLOW,
                    "pool_timeout": connect_timeout_s,
                }
        try:
            self.engine: Engine = create_engine(
                self.url, connect_args=connect_args, pool_pre_ping=True, **pooling
            )
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"invalid database URL {redact(url)}: {exc}") from exc
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Upgrade to every head. On PostgreSQL under a transaction-scoped advisory lock, so
        replicas starting together do not race: the second waits, then finds nothing to do."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "heads")
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0]  # drivers add hint lines
            raise StoreError(f"cannot reach database {redact(self.url)}: {reason}") from exc
        log.info("database schema up to date (%s)", redact(self.url))

    @contextmanager
    def advisory_lock(self, key: int) -> Iterator[None]:
        """Held by one process at a time across every replica (a PostgreSQL session advisory
        lock on a connection of its own); SQLite is one process: nothing to hold."""
        if not self.url.startswith("postgresql"):
            yield
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(f"database error: {exc}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def delete_in_batches(
    db: Database,
    key: Sequence[InstrumentedAttribute[Any]],
    where: ColumnElement[bool],
    batch: int = PRUNE_BATCH,
) -> int:
    """``DELETE ... WHERE key IN (SELECT key ... WHERE where LIMIT batch)`` until none is left,
    each batch its own short transaction: retention never loads, locks or logs every expired
    row at once. ``key`` is the table's primary key column(s). Returns how many went."""
    table = key[0].class_
    target = tuple_(*key) if len(key) > 1 else key[0]
    removed = 0
    while True:
        chosen = select(*key).where(where).limit(batch)
        with db.session() as s:
            result = s.execute(
                delete(table).where(target.in_(chosen)).execution_options(synchronize_session=False)
            )
            n = int(getattr(result, "rowcount", 0) or 0)
        removed += n
        if n < batch:
            return removed
