"""Frames of a video file are logged with source ``video`` (their frame index and time in the metadata).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_source"), type_="check")
        batch.create_check_constraint("source", "source IN ('app', 'api', 'cli', 'batch', 'video')")


def downgrade() -> None:
    for table in ("detections", "feedback"):
        op.execute(f"DELETE FROM {table} WHERE prediction_id IN (SELECT id FROM predictions WHERE source = 'video')")
    op.execute("DELETE FROM predictions WHERE source = 'video'")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_source"), type_="check")
        batch.create_check_constraint("source", "source IN ('app', 'api', 'cli', 'batch')")
