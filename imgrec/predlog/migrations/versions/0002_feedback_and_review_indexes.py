"""Feedback on predictions; a stored UTC day per prediction; the indexes the review queue,
per-day charts and latency percentiles walk.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows get their day from created_at (naive UTC), then the column becomes required.
    # (On SQLite the batch step rebuilds the table, so it runs before anything references it.)
    op.add_column("predictions", sa.Column("created_day", sa.Date, nullable=True))
    day_of_created_at = "date(created_at)" if op.get_bind().dialect.name == "sqlite" else "CAST(created_at AS DATE)"
    op.execute(f"UPDATE predictions SET created_day = {day_of_created_at}")
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("created_day", existing_type=sa.Date, nullable=False)

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prediction_id", sa.Integer, nullable=False),
        sa.Column("corrected_label", sa.Text, nullable=True),
        sa.Column("wrong", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"], name="fk_feedback_prediction_id"),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])

    op.create_index("ix_predictions_day", "predictions", ["created_day", "model_name", "model_version", "latency_ms"])
    op.create_index("ix_predictions_top1_score", "predictions", ["top1_score"])
    op.create_index("ix_predictions_latency_ms", "predictions", ["latency_ms"])


def downgrade() -> None:
    op.drop_index("ix_predictions_latency_ms", table_name="predictions")
    op.drop_index("ix_predictions_top1_score", table_name="predictions")
    op.drop_index("ix_predictions_day", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("created_day")
    op.drop_table("feedback")
