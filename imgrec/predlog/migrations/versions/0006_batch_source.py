"""Predictions from ``imgrec batch`` are logged with source ``batch``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_source"), type_="check")
        batch.create_check_constraint("source", "source IN ('app', 'api', 'cli', 'batch')")


def downgrade() -> None:
    for table in ("detections", "feedback"):
        op.execute(f"DELETE FROM {table} WHERE prediction_id IN (SELECT id FROM predictions WHERE source = 'batch')")
    op.execute("DELETE FROM predictions WHERE source = 'batch'")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_source"), type_="check")
        batch.create_check_constraint("source", "source IN ('app', 'api', 'cli')")
