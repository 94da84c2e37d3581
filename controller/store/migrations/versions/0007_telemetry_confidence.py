"""telemetry confidence: keep each report's edge-confidence histogram (raw rows and rollups).

A JSON list of [upper bound, count] pairs like the latency columns; rows written before
this migration read as an empty histogram.

Revision ID: 0007_telemetry_confidence
Revises: 0003_telemetry
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_telemetry_confidence"
down_revision = "0003_telemetry"  # the telemetry branch: its tables must exist first
branch_labels = None
depends_on = None

_TABLES = ("telemetry_reports", "telemetry_rollups")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("confidence", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("confidence")
