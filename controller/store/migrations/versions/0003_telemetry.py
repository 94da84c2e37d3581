"""Telemetry time series: raw reports and one-minute rollups.

Revision ID: 0003_telemetry
Revises: 0001_devices
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_telemetry"
down_revision = "0001_devices"
branch_labels = ("telemetry",)
depends_on = None


def _counts() -> list[sa.Column]:
    names = (
        "frames",
        "offloaded",
        "offload_failures",
        "audited",
        "skipped",
        "bad_frames",
        "offload_pairs",
        "offload_agreed",
        "audit_pairs",
        "audit_agreed",
        "reports_dropped",
    )
    columns = [sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in names]
    return [
        *columns,
        sa.Column("latency", sa.JSON(), nullable=False),
        sa.Column("local_latency", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "telemetry_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(128), nullable=False, index=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False, index=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False, server_default=""),
        sa.Column("variant_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("sequence", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rss_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cpu_percent", sa.Float(), nullable=False, server_default="0"),
        *_counts(),
    )
    op.create_table(
        "telemetry_rollups",
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column("minute_ms", sa.BigInteger(), primary_key=True),
        sa.Column("variant_id", sa.String(256), primary_key=True),
        sa.Column("reports", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("start_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("end_ms", sa.BigInteger(), nullable=False, server_default="0"),
        *_counts(),
    )
    op.create_index("ix_telemetry_rollups_minute", "telemetry_rollups", ["minute_ms"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_rollups_minute", "telemetry_rollups")
    op.drop_table("telemetry_rollups")
    op.drop_table("telemetry_reports")
