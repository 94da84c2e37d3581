"""rollout_variants: the variant per profile a rollout pinned when it started.

Revision ID: 0006_rollout_variants
Revises: 0004_rollouts
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_rollout_variants"
down_revision = "0004_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollout_variants",
        sa.Column("rollout_id", sa.String(32), primary_key=True),
        sa.Column("profile", sa.String(64), primary_key=True),
        sa.Column("variant_id", sa.String(320), nullable=False, server_default=""),
        sa.Column("target_path", sa.String(512), nullable=False, server_default=""),
        sa.Column("sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("variant_metadata", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollout_variants")
