"""A reviewer's correction of a multi-label prediction: the whole corrected label set (a JSON list of labels;
an empty list means "none of the labels is there"), beside the single ``corrected_label`` of other tasks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
    op.add_column("feedback", sa.Column("corrected_labels", json_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("corrected_labels")
