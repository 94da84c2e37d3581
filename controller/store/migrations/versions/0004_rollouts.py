"""Rollouts, rollout events and per-device desired state.

Revision ID: 0004_rollouts
Revises: 0001_devices
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_rollouts"
down_revision = "0001_devices"
branch_labels = ("rollouts",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("rollout_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_rollouts_phase", "rollouts", ["phase"])
    op.create_table(
        "rollout_events",
        sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(32), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])
    op.create_table(
        "device_desired_state",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False, server_default=""),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("variant_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("target_path", sa.String(512), nullable=False, server_default=""),
        sa.Column("sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("length", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("rollout_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reported_state", sa.String(16), nullable=False, server_default=""),
        sa.Column("reported_variant", sa.String(256), nullable=False, server_default=""),
        sa.Column("reported_reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("running_variant", sa.String(256), nullable=False, server_default=""),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("device_desired_state")
    op.drop_index("ix_rollout_events_rollout_id", "rollout_events")
    op.drop_table("rollout_events")
    op.drop_index("ix_rollouts_phase", "rollouts")
    op.drop_table("rollouts")
