"""Partial indexes on references and links; the (ref_country, ref_number) index goes.

Documents are looked up by ``ref_number`` and ``linked_id`` only with a value
(``=`` or ``IN``), and export holdings by ``ia_holding_id`` likewise, so rows where
the column is NULL (every import authorization, every import holding) need no
index entry. ``ref_number`` alone serves the lookups that also name the country.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTIAL = (
    ("documents", "ref_number"),
    ("documents", "linked_id"),
    ("holdings", "ia_holding_id"),
)


def upgrade() -> None:
    op.drop_index("ix_documents_ref_country_ref_number", table_name="documents")
    for table, column in PARTIAL:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table)
        condition = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name,
            table,
            [column],
            sqlite_where=condition,
            postgresql_where=condition,
        )


def downgrade() -> None:
    for table, column in PARTIAL:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column])
    op.create_index(
        "ix_documents_ref_country_ref_number",
        "documents",
        ["ref_country", "ref_number"],
    )
