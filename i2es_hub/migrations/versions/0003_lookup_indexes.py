"""Indexes for looking documents up by number and by quoted number.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 20:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_number"), ["number"])
        batch_op.create_index(batch_op.f("ix_documents_ref_number"), ["ref_number"])


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_documents_ref_number"))
        batch_op.drop_index(batch_op.f("ix_documents_number"))
