"""Models, builds, variants, per-profile selections and on-device benchmark reports.

Revision ID: 0002_models
Revises: 0001_devices
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_models"
down_revision = "0001_devices"
branch_labels = ("models",)
depends_on = None


def _model_fk() -> sa.Column:
    return sa.Column(
        "model_id",
        sa.Integer(),
        sa.ForeignKey("models.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False, server_default="edge"),
        sa.Column("cloud_for", sa.String(128), nullable=False, server_default=""),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("source_size", sa.BigInteger(), nullable=False),
        sa.Column("input_name", sa.String(256), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("input_dtype", sa.String(16), nullable=False),
        sa.Column("layout", sa.String(8), nullable=False),
        sa.Column("output_name", sa.String(256), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("preprocessing", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("validation_sha256", sa.String(64), nullable=False),
        sa.Column("calibration_sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("build_status", sa.String(16), nullable=False, server_default=""),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
    )
    op.create_table(
        "model_builds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _model_fk(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("profiles", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(1024), nullable=False, server_default=""),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "model_variants",
        sa.Column("variant_id", sa.String(320), primary_key=True),
        _model_fk(),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False, server_default=""),
        sa.Column("artifact_sha256", sa.String(64), nullable=False, server_default="", index=True),
        sa.Column("file", sa.String(256), nullable=False, server_default=""),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("zstd_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("variant_metadata", sa.JSON(), nullable=False),
    )
    op.create_table(
        "model_selections",
        sa.Column(
            "model_id",
            sa.Integer(),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("profile", sa.String(64), primary_key=True),
        sa.Column("variant_id", sa.String(320), nullable=False, server_default=""),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("latency_source", sa.String(32), nullable=False, server_default=""),
        sa.Column("rejected", sa.JSON(), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "device_benchmarks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), nullable=False, index=True),
        sa.Column("profile", sa.String(64), nullable=False, index=True),
        sa.Column("variant_id", sa.String(320), nullable=False, index=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("p95_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("error", sa.String(1024), nullable=False, server_default=""),
        sa.Column("reported_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("device_id", "variant_id", name="uq_bench_device_variant"),
    )


def downgrade() -> None:
    for table in (
        "device_benchmarks",
        "model_selections",
        "model_variants",
        "model_builds",
        "models",
    ):
        op.drop_table(table)
