"""hard_example_policies (per edge model, opt-in: cap, retention, which devices) and
hard_examples (the index of the stored offloaded frames, their cloud labels and sizes).

Revision ID: 0010_hard_examples
Revises: 0005_model_rebuilds
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_hard_examples"
down_revision = "0005_model_rebuilds"  # the models branch
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hard_example_policies",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=False),
        sa.Column("retention_s", sa.BigInteger(), nullable=False),
        sa.Column("device_ids", sa.JSON(), nullable=False),
        sa.Column("device_labels", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "hard_examples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("device_id", sa.String(128), nullable=False, index=True),
        sa.Column("stored_ms", sa.BigInteger(), nullable=False, index=True),
        sa.Column("sha256", sa.String(64), nullable=False, index=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("frame_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("edge_variant_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("cloud_label", sa.Integer(), nullable=False),
        sa.Column("cloud_confidence", sa.Float(), nullable=False),
        sa.Column("edge_label", sa.Integer(), nullable=False),
        sa.Column("edge_confidence", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hard_examples")
    op.drop_table("hard_example_policies")
