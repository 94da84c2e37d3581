"""The registry database: SQLAlchemy models, Alembic migrations and repositories."""

from controller.store.db import Database

__all__ = ["Database"]
