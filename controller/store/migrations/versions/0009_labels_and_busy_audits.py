"""frame_labels (operator-labelled offloaded/audited frames, read by the accuracy estimate)
and the audit_skipped_busy telemetry counter (audits not sent: every offload slot was busy).

Revision ID: 0009_labels_and_busy_audits
Revises: 0007_telemetry_confidence
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_labels_and_busy_audits"
down_revision = "0007_telemetry_confidence"  # the telemetry branch
branch_labels = None
depends_on = None

_TELEMETRY = ("telemetry_reports", "telemetry_rollups")


def upgrade() -> None:
    for table in _TELEMETRY:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("audit_skipped_busy", sa.BigInteger(), nullable=False, server_default="0")
            )
    op.create_table(
        "frame_labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("frame_key", sa.String(600), nullable=False, unique=True),
        sa.Column("device_id", sa.String(128), nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("edge_variant_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("frame_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("edge_label", sa.Integer(), nullable=False),
        sa.Column("edge_confidence", sa.Float(), nullable=False),
        sa.Column("cloud_label", sa.Integer(), nullable=False),
        sa.Column("cloud_confidence", sa.Float(), nullable=False),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("labelled_ms", sa.BigInteger(), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("frame_labels")
    for table in _TELEMETRY:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("audit_skipped_busy")
