"""An idempotency key per prediction: a record written twice (replayed from the spool after a write whose
answer was lost) stays one row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("request_key", sa.String(32), nullable=True))
    op.create_index("uq_predictions_request_key", "predictions", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_predictions_request_key", "predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("request_key")
