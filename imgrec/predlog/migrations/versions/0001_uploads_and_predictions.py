"""Uploads (one row per distinct image) and predictions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("byte_size", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("stored_path", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.UniqueConstraint("sha256", name="uq_uploads_sha256"),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("upload_id", sa.Integer, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("top_k", JSON_TYPE, nullable=False),
        sa.Column("top1_label", sa.Text, nullable=False),
        sa.Column("top1_score", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("metadata", JSON_TYPE, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name="fk_predictions_upload_id"),
        sa.CheckConstraint("source IN ('app', 'api', 'cli')", name=op.f("ck_predictions_source")),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index(
        "ix_predictions_model",
        "predictions",
        ["model_name", "model_version", "created_at", "top1_score", "latency_ms"],
    )
    op.create_index("ix_predictions_top1_label", "predictions", ["top1_label", "top1_score"])
    op.create_index("ix_predictions_source", "predictions", ["source"])
    op.create_index("ix_predictions_upload_id", "predictions", ["upload_id"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("uploads")
