"""The review queue as a relabelling loop: each prediction's file name, and a small thumbnail of each
uncertain image (kept within the upload retention, whether or not uploads are kept).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("filename", sa.Text, nullable=True))
    op.add_column("uploads", sa.Column("thumbnail", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("thumbnail")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("filename")
