"""Validation: validation_results, quarantine, audit_log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``validation_results``, ``quarantine`` and ``audit_log``; existing tables are untouched."""
    op.create_table(
        "validation_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("suite", sa.String(128), nullable=False),
        sa.Column("suite_version", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("rows_checked", sa.Integer(), nullable=False),
        sa.Column("rows_failed", sa.Integer(), nullable=False),
        sa.Column("rows_warned", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("docs_path", sa.Text(), nullable=True),
        sa.Column("ingest_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "\"trigger\" IN ('ingest', 'validate', 'release')", name=op.f("ck_validation_results_trigger")
        ),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"],
            ["ingest_runs.id"],
            name=op.f("fk_validation_results_ingest_run_id_ingest_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_validation_results"),
    )
    op.create_index("ix_validation_results_batch_id", "validation_results", ["batch_id"])
    op.create_index("ix_validation_results_symbol_timeframe", "validation_results", ["symbol", "timeframe"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=True),
        sa.Column("row_json", sa.JSON(), nullable=False),
        sa.Column("failed_expectations", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=True),
        sa.Column("validation_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('quarantined', 'released', 'dropped')", name=op.f("ck_quarantine_status")
        ),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"], ["ingest_runs.id"], name=op.f("fk_quarantine_ingest_run_id_ingest_runs")
        ),
        sa.ForeignKeyConstraint(
            ["validation_id"],
            ["validation_results.id"],
            name=op.f("fk_quarantine_validation_id_validation_results"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
    )
    op.create_index("ix_quarantine_symbol_timeframe_ts", "quarantine", ["symbol", "timeframe", "ts"])
    op.create_index("ix_quarantine_status", "quarantine", ["status"])
    op.create_index("ix_quarantine_ingest_run_id", "quarantine", ["ingest_run_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])


def downgrade() -> None:
    """Drop the three tables (quarantine first: it refers to validation_results)."""
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_quarantine_ingest_run_id", table_name="quarantine")
    op.drop_index("ix_quarantine_status", table_name="quarantine")
    op.drop_index("ix_quarantine_symbol_timeframe_ts", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_index("ix_validation_results_symbol_timeframe", table_name="validation_results")
    op.drop_index("ix_validation_results_batch_id", table_name="validation_results")
    op.drop_table("validation_results")
