"""Alembic environment: runs on the connection the controller hands in (never reads env vars)."""

from alembic import context

from controller.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
