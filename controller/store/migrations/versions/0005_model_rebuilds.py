"""models.rebuilt_from: a version made by `model build --rebuild` names the one it rebuilt.

Revision ID: 0005_model_rebuilds
Revises: 0002_models
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_model_rebuilds"
down_revision = "0002_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(
            sa.Column("rebuilt_from", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("rebuilt_from")
