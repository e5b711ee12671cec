"""The boxes a detector found: one row per detection (label, score, box in the original image's pixels).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detections",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("prediction_id", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("x1", sa.Float, nullable=False),
        sa.Column("y1", sa.Float, nullable=False),
        sa.Column("x2", sa.Float, nullable=False),
        sa.Column("y2", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"], name="fk_detections_prediction_id"),
    )
    op.create_index("ix_detections_prediction_id", "detections", ["prediction_id", "rank"])
    op.create_index("ix_detections_label", "detections", ["label", "score"])
    op.create_index("ix_detections_score", "detections", ["score"])


def downgrade() -> None:
    op.drop_table("detections")
