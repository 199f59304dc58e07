"""estimate ledger: estimates, balances, holdings, prohibitions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 18:49:04.055747
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("substance", sa.String(length=128), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("consumed", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balances")),
        sa.UniqueConstraint(
            "country",
            "substance",
            "year",
            name=op.f("uq_balances_country_substance_year"),
        ),
    )
    op.create_table(
        "estimates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("substance", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("grams", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("confirmed_on", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimates")),
        sa.UniqueConstraint(
            "country",
            "substance",
            "kind",
            "year",
            "confirmed_on",
            name=op.f("uq_estimates_country_substance_kind_year_confirmed_on"),
        ),
    )
    op.create_table(
        "holdings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("document_id", sa.String(length=32), nullable=False),
        sa.Column("substance", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("reserved", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("drawn", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("ia_holding_id", sa.String(length=32), nullable=True),
        sa.Column("consumed", sa.Numeric(precision=24, scale=3), nullable=False),
        sa.Column("consumed_year", sa.Integer(), nullable=True),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdings")),
        sa.UniqueConstraint(
            "document_id", "substance", name=op.f("uq_holdings_document_id_substance")
        ),
    )
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_holdings_country_substance_year"),
            ["country", "substance", "year"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_holdings_ia_holding_id"), ["ia_holding_id"], unique=False
        )

    op.create_table(
        "prohibitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("substance", sa.String(length=128), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prohibitions")),
        sa.UniqueConstraint(
            "country",
            "substance",
            "since",
            name=op.f("uq_prohibitions_country_substance_since"),
        ),
    )


def downgrade() -> None:
    op.drop_table("prohibitions")
    with op.batch_alter_table("holdings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_holdings_ia_holding_id"))
        batch_op.drop_index(batch_op.f("ix_holdings_country_substance_year"))

    op.drop_table("holdings")
    op.drop_table("estimates")
    op.drop_table("balances")
