"""Devices and enrollment tokens.

Revision ID: 0001_devices
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_devices"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("requested_profile", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False, server_default=""),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="registered"),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("cert_fingerprint", sa.String(64), nullable=True, unique=True),
        sa.Column("mqtt_password_hash", sa.String(256), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("agent_version", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_ms", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_id", sa.String(16), primary_key=True),
        sa.Column(
            "device_id",
            sa.String(64),
            sa.ForeignKey("devices.device_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("enrollment_tokens")
    op.drop_table("devices")
