"""Replicas: the leader lease (controller_leases) and one stored row per telemetry report
(a unique index on device, sequence and window start, so a redelivered report is ignored).

Duplicates stored before the index are removed first (the oldest row of each is kept).

Revision ID: 0011_replicas
Revises: 0009_labels_and_busy_audits
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_replicas"
down_revision = "0009_labels_and_busy_audits"  # the telemetry branch
branch_labels = None
depends_on = None

REPORT_KEY = "uq_telemetry_reports_device_sequence_start"


def upgrade() -> None:
    op.create_table(
        "controller_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("renewed_ms", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "DELETE FROM telemetry_reports WHERE id NOT IN (SELECT MIN(id) FROM telemetry_reports "
        "GROUP BY device_id, sequence, start_ms)"
    )
    op.create_index(
        REPORT_KEY, "telemetry_reports", ["device_id", "sequence", "start_ms"], unique=True
    )


def downgrade() -> None:
    op.drop_index(REPORT_KEY, table_name="telemetry_reports")
    op.drop_table("controller_leases")
