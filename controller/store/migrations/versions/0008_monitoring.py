"""monitoring: the fleet event log and alerts (a branch of its own off the devices table).

Revision ID: 0008_monitoring
Revises: 0001_devices
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_monitoring"
down_revision = "0001_devices"
branch_labels = ("monitoring",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_events",
        sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("unix_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("subject", sa.String(256), nullable=False, server_default=""),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_fleet_events_unix_ms", "fleet_events", ["unix_ms"])
    op.create_index("ix_fleet_events_kind", "fleet_events", ["kind"])
    op.create_index("ix_fleet_events_device_id", "fleet_events", ["device_id"])
    op.create_table(
        "fleet_alerts",
        sa.Column("alert_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("severity", sa.String(16), nullable=False, server_default="warning"),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("last_evidence", sa.JSON(), nullable=False),
    )
    op.create_index("ix_fleet_alerts_rule", "fleet_alerts", ["rule"])
    op.create_index("ix_fleet_alerts_started_ms", "fleet_alerts", ["started_ms"])
    op.create_index("ix_fleet_alerts_ended_ms", "fleet_alerts", ["ended_ms"])


def downgrade() -> None:
    op.drop_table("fleet_alerts")
    op.drop_table("fleet_events")
