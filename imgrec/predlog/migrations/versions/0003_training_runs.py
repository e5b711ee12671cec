"""A mirror of training runs' status, so runs can be queried beside the predictions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("backbone", sa.Text, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("total_epochs", sa.Integer, nullable=True),
        sa.Column("model_ref", sa.Text, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_training_runs"),
    )


def downgrade() -> None:
    op.drop_table("training_runs")
