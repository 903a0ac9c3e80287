"""Online providers: provider symbols on assets, usage, breaker state, discrepancies,
verifications, backfill chunks and SEC EDGAR company data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _provider_tables() -> None:
    op.create_table(
        "provider_usage",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("credits", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "day", name="pk_provider_usage"),
    )
    op.create_table(
        "provider_state",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("state IN ('closed', 'open', 'half_open')", name=op.f("ck_provider_state_state")),
        sa.PrimaryKeyConstraint("provider", name="pk_provider_state"),
    )
    op.create_table(
        "provider_discrepancies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("primary_provider", sa.String(32), nullable=False),
        sa.Column("secondary_provider", sa.String(32), nullable=False),
        sa.Column("primary_value", sa.Float(), nullable=False),
        sa.Column("secondary_value", sa.Float(), nullable=False),
        sa.Column("rel_diff", sa.Float(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("detected_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provider_discrepancies"),
    )
    op.create_index(
        "ix_provider_discrepancies_symbol_timeframe_ts",
        "provider_discrepancies",
        ["symbol", "timeframe", "ts"],
    )
    op.create_table(
        "bar_verifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("primary_provider", sa.String(32), nullable=False),
        sa.Column("secondary_provider", sa.String(32), nullable=True),
        sa.Column("first_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_ts", sa.BigInteger(), nullable=True),
        sa.Column("bars_compared", sa.Integer(), nullable=False),
        sa.Column("discrepancies", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("checked_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('verified', 'discrepant', 'skipped')", name=op.f("ck_bar_verifications_status")
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bar_verifications"),
    )
    op.create_index("ix_bar_verifications_symbol_timeframe", "bar_verifications", ["symbol", "timeframe"])
    op.create_table(
        "backfill_chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("chunk_start", sa.BigInteger(), nullable=False),
        sa.Column("chunk_end", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name=op.f("ck_backfill_chunks_status")),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_chunks"),
        sa.UniqueConstraint(
            "symbol", "timeframe", "chunk_start", "chunk_end", name="uq_backfill_chunks_range"
        ),
    )


def _company_tables() -> None:
    op.create_table(
        "companies",
        sa.Column("cik", sa.String(10), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tickers", sa.JSON(), nullable=False),
        sa.Column("sic", sa.String(8), nullable=True),
        sa.Column("fiscal_year_end", sa.String(4), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("cik", name="pk_companies"),
    )
    op.create_table(
        "company_filings",
        sa.Column("accession", sa.String(32), nullable=False),
        sa.Column("cik", sa.String(10), nullable=False),
        sa.Column("form", sa.String(32), nullable=False),
        sa.Column("filing_date", sa.String(10), nullable=False),
        sa.Column("report_date", sa.String(10), nullable=False),
        sa.Column("primary_document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("accession", name="pk_company_filings"),
    )
    op.create_index("ix_company_filings_cik_filing_date", "company_filings", ["cik", "filing_date"])
    op.create_table(
        "company_facts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cik", sa.String(10), nullable=False),
        sa.Column("taxonomy", sa.String(32), nullable=False),
        sa.Column("concept", sa.String(256), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("period_start", sa.String(10), nullable=False),
        sa.Column("period_end", sa.String(10), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=True),
        sa.Column("fiscal_period", sa.String(8), nullable=True),
        sa.Column("form", sa.String(32), nullable=True),
        sa.Column("filed", sa.String(10), nullable=False),
        sa.Column("accession", sa.String(32), nullable=False),
        sa.Column("frame", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_company_facts"),
        sa.UniqueConstraint(
            "cik",
            "taxonomy",
            "concept",
            "unit",
            "accession",
            "period_start",
            "period_end",
            name="uq_company_facts_fact",
        ),
    )
    op.create_index("ix_company_facts_cik_concept", "company_facts", ["cik", "concept"])


def upgrade() -> None:
    """Add ``assets.provider_symbols`` and create the provider and company tables."""
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("provider_symbols", sa.JSON(), nullable=False, server_default="{}"))
    _provider_tables()
    _company_tables()


def downgrade() -> None:
    """Drop what :func:`upgrade` created; bars and other tables are untouched."""
    for table in ("company_facts", "company_filings", "companies", "backfill_chunks", "bar_verifications"):
        op.drop_table(table)
    op.drop_index("ix_provider_discrepancies_symbol_timeframe_ts", table_name="provider_discrepancies")
    for table in ("provider_discrepancies", "provider_state", "provider_usage"):
        op.drop_table(table)
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("provider_symbols")
