"""The label set of a multi-label prediction: one row per label found (score over its class's threshold).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_labels",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("prediction_id", sa.Integer, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_labels"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"], name="fk_prediction_labels_prediction_id"),
    )
    op.create_index("ix_prediction_labels_prediction_id", "prediction_labels", ["prediction_id"])
    op.create_index("ix_prediction_labels_label", "prediction_labels", ["label", "score"])


def downgrade() -> None:
    op.drop_table("prediction_labels")
