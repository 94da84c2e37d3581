"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.store.db import Database
from tests.fleet import postgres_available, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated registry database, SQLite and (where a server answers) a fresh PostgreSQL
    one; a test file with its own ``db`` fixture uses that instead."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 't.db'}")
        database.migrate()
        yield database
        database.close()
        return
    if not postgres_available():
        pytest.skip("no PostgreSQL server")
    with postgres_database() as url:
        database = Database(url)
        database.migrate()
        yield database
        database.close()


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """A fresh migrated PostgreSQL database (the tests that use it need one: replicas)."""
    with postgres_database() as url:
        database = Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.close()
