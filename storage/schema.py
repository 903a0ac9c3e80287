"""Tables of the FKS database, as SQLAlchemy typed declarative models.

These models describe the schema; they never create it. Migrations in ``storage/migrations``
create and change the tables, and a test checks that the migrated database matches these models.

Conventions: every timestamp is an integer number of milliseconds since the Unix epoch, UTC
(``BIGINT``); bar timestamps are the bar's open time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES: tuple[str, ...] = ("running", "success", "failed", "interrupted")
QUARANTINE_STATUSES: tuple[str, ...] = ("quarantined", "released", "dropped")
VALIDATION_TRIGGERS: tuple[str, ...] = ("ingest", "validate", "release")
PROMOTION_DECISIONS: tuple[str, ...] = ("promoted", "refused", "forced", "rolled_back")
BREAKER_STATES: tuple[str, ...] = ("closed", "open", "half_open")
VERIFICATION_STATUSES: tuple[str, ...] = ("verified", "discrepant", "skipped")
CHUNK_STATUSES: tuple[str, ...] = ("pending", "done", "failed")


class Base(DeclarativeBase):
    """Declarative base of the FKS tables; its metadata carries the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BarRow(Base):
    """One OHLCV bar of one symbol and timeframe (table ``bars``).

    ``ts`` and ``ingested_at`` are epoch milliseconds UTC; ``ts`` is the bar's open time.
    On SQLite the table is ``WITHOUT ROWID``: rows are stored in primary-key order, so a
    symbol's series is contiguous on disk.
    """

    __tablename__ = "bars"
    __table_args__ = ({"sqlite_with_rowid": False},)

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    open: Mapped[float] = mapped_column(Float, nullable=False)
    high: Mapped[float] = mapped_column(Float, nullable=False)
    low: Mapped[float] = mapped_column(Float, nullable=False)
    close: Mapped[float] = mapped_column(Float, nullable=False)
    volume: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    ingested_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AssetRow(Base):
    """One registered instrument (table ``assets``), mirroring :class:`config.assets.AssetSpec`.

    ``created_at`` and ``updated_at`` are epoch milliseconds UTC.
    """

    __tablename__ = "assets"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    asset_class: Mapped[str] = mapped_column(String(16), nullable=False)
    calendar: Mapped[str] = mapped_column(String(64), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    enabled: Mapped[bool] = mapped_column(nullable=False)
    default_source: Mapped[str] = mapped_column(String(64), nullable=False)
    source_options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    provider_symbols: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, server_default="{}")
    description: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class IngestRunRow(Base):
    """One ingestion of one symbol and timeframe from one source (table ``ingest_runs``).

    ``requested`` records what was asked (start, end, path, options; never secrets).
    ``first_ts``, ``last_ts``, ``started_at`` and ``finished_at`` are epoch milliseconds UTC.
    ``host``, ``pid`` and ``pid_started`` name the process that runs it (``pid_started``: the
    process's start time as the OS reports it, so a reused pid is not taken for the run's; None
    where unknown): a ``running`` run whose process is gone on its host becomes ``interrupted``.
    """

    __tablename__ = "ingest_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'success', 'failed', 'interrupted')", name="status"),
        Index("ix_ingest_runs_batch_id", "batch_id"),
        Index("ix_ingest_runs_symbol_timeframe", "symbol", "timeframe"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(64), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    requested: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    rows_received: Mapped[int | None] = mapped_column(Integer)
    rows_inserted: Mapped[int | None] = mapped_column(Integer)
    rows_updated: Mapped[int | None] = mapped_column(Integer)
    rows_unchanged: Mapped[int | None] = mapped_column(Integer)
    first_ts: Mapped[int | None] = mapped_column(BigInteger)
    last_ts: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_started: Mapped[int | None] = mapped_column(BigInteger)


class ValidationResultRow(Base):
    """One run of one expectation suite over one batch of one symbol and timeframe
    (table ``validation_results``).

    ``outcomes`` holds one object per expectation (``id``, ``severity``, ``success``,
    ``unexpected_count``, ``reason``); ``gaps`` the missing-bar summary (missing bars, gap count,
    longest gap start/end/bars). ``trigger`` is ``ingest``, ``validate`` or ``release``.
    ``created_at`` is epoch milliseconds UTC.
    """

    __tablename__ = "validation_results"
    __table_args__ = (
        CheckConstraint("\"trigger\" IN ('ingest', 'validate', 'release')", name="trigger"),
        Index("ix_validation_results_batch_id", "batch_id"),
        Index("ix_validation_results_symbol_timeframe", "symbol", "timeframe"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(64), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    suite: Mapped[str] = mapped_column(String(128), nullable=False)
    suite_version: Mapped[str] = mapped_column(String(64), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    rows_checked: Mapped[int] = mapped_column(Integer, nullable=False)
    rows_failed: Mapped[int] = mapped_column(Integer, nullable=False)
    rows_warned: Mapped[int] = mapped_column(Integer, nullable=False)
    success: Mapped[bool] = mapped_column(nullable=False)
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    gaps: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    docs_path: Mapped[str | None] = mapped_column(Text)
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id"))
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class QuarantineRow(Base):
    """One input row held back by validation (table ``quarantine``).

    ``row_json`` is the row as received (raw values as strings or numbers; NaN and infinities as
    the strings ``"nan"``, ``"inf"``, ``"-inf"``); ``failed_expectations`` the list of expectation
    ids it failed; ``reasons`` a human-readable explanation. ``ts`` is the bar's open time in epoch
    milliseconds UTC, NULL when the row's timestamp could not be parsed. ``status`` is
    ``quarantined`` until someone decides (``released`` or ``dropped``); ``created_at`` and
    ``decided_at`` are epoch milliseconds UTC.
    """

    __tablename__ = "quarantine"
    __table_args__ = (
        CheckConstraint("status IN ('quarantined', 'released', 'dropped')", name="status"),
        Index("ix_quarantine_symbol_timeframe_ts", "symbol", "timeframe", "ts"),
        Index("ix_quarantine_status", "status"),
        Index("ix_quarantine_ingest_run_id", "ingest_run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    ts: Mapped[int | None] = mapped_column(BigInteger)
    row_json: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    failed_expectations: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    reasons: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id"))
    validation_id: Mapped[int | None] = mapped_column(ForeignKey("validation_results.id"))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decision_note: Mapped[str | None] = mapped_column(Text)


ORDER_AUDIT_ACTIONS: tuple[str, ...] = ("order.created", "order.transition", "order.fill")
"""The audit actions the OMS writes for every order (several rows per order: most of the log of
an account that trades). They are left out of ``ix_audit_log_action`` (migration 0018): an index
entry per row cost every order transaction another page write, and an index on a value most rows
share does not narrow a query on it (a scan of the log by ``id`` does as well)."""
AUDIT_INDEXED_WHERE = f"({' AND '.join(f'action <> {a!r}' for a in ORDER_AUDIT_ACTIONS)})"
"""The predicate of the partial index ``ix_audit_log_action``: a query by another action uses the
index when its WHERE has this very term (as :func:`storage.audit.list_audit` adds it). Inequalities
joined by AND, not ``NOT IN (...)``, since migration 0019: SQLite evaluates the predicate for
every row written, and builds a temporary table of an ``IN`` list each time (about 1.2 us an
audit row, several rows per order)."""


class AuditLogRow(Base):
    """One recorded action (table ``audit_log``): who (``actor``) did what (``action``) to what
    (``subject``), with ``details`` as JSON (secrets removed). ``at`` is epoch milliseconds UTC.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action", "action", sqlite_where=text(AUDIT_INDEXED_WHERE),
              postgresql_where=text(AUDIT_INDEXED_WHERE)),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class FeatureBuildRow(Base):
    """One build of one feature set version over one series (table ``feature_builds``).

    The features themselves live in an immutable Parquet file at ``path`` (relative to the
    feature store root); this row says which input bars produced it: ``bars_first`` and
    ``bars_last`` (open times of the first and last input bar), ``bar_count`` and
    ``bars_checksum`` (hex SHA-256 of the input bars, see :func:`storage.bars_checksum`).
    ``columns`` is the list of feature column names, ``rows`` the number of feature rows.
    ``bars_first``, ``bars_last`` and ``built_at`` are epoch milliseconds UTC. One build per
    (set, version, symbol, timeframe, input checksum): an unchanged input is a cache hit.
    """

    __tablename__ = "feature_builds"
    __table_args__ = (
        UniqueConstraint(
            "set_name",
            "set_version",
            "symbol",
            "timeframe",
            "bars_checksum",
            name="uq_feature_builds_input",
        ),
        Index(
            "ix_feature_builds_series_built_at",
            "set_name",
            "set_version",
            "symbol",
            "timeframe",
            "built_at",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_name: Mapped[str] = mapped_column(String(64), nullable=False)
    set_version: Mapped[str] = mapped_column(String(64), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    bars_first: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bars_last: Mapped[int] = mapped_column(BigInteger, nullable=False)
    bar_count: Mapped[int] = mapped_column(Integer, nullable=False)
    bars_checksum: Mapped[str] = mapped_column(String(64), nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    columns: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    built_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class PromotionRow(Base):
    """One decision of the promotion gate, or one rollback, for one registered model (table
    ``promotions``).

    ``decision`` is ``promoted``, ``refused``, ``forced`` or ``rolled_back``.
    ``challenger_version`` is the version the row is about (for a rollback, the version that is
    champion again); ``champion_version`` the champion when it was decided (NULL when there was
    none). ``primary_metric`` and the values compared on it (``challenger_value``,
    ``champion_value``, best baseline ``baseline_name``/``baseline_value``) and the backtest
    window (``window_start``, ``window_end``) are NULL only where they do not apply (a rollback, a
    missing value). ``reasons`` is the list of sentences behind the decision, ``metrics`` the
    gate's snapshot. ``window_start``, ``window_end`` and ``decided_at`` are epoch milliseconds UTC.
    ``tearsheet`` is the path of the tearsheet of the backtests the gate decided on (its run's own
    report folder); NULL for a rollback and for rows recorded before migration 0011.
    """

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint("decision IN ('promoted', 'refused', 'forced', 'rolled_back')", name="decision"),
        Index("ix_promotions_model_name", "model_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256), nullable=False)
    challenger_version: Mapped[str] = mapped_column(String(32), nullable=False)
    champion_version: Mapped[str | None] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16), nullable=False)
    primary_metric: Mapped[str | None] = mapped_column(String(64))
    challenger_value: Mapped[float | None] = mapped_column(Float)
    champion_value: Mapped[float | None] = mapped_column(Float)
    baseline_name: Mapped[str | None] = mapped_column(String(64))
    baseline_value: Mapped[float | None] = mapped_column(Float)
    window_start: Mapped[int | None] = mapped_column(BigInteger)
    window_end: Mapped[int | None] = mapped_column(BigInteger)
    reasons: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    decided_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tearsheet: Mapped[str | None] = mapped_column(Text)


bars_table = BarRow.__table__
assets_table = AssetRow.__table__
ingest_runs_table = IngestRunRow.__table__
validation_results_table = ValidationResultRow.__table__
quarantine_table = QuarantineRow.__table__
audit_log_table = AuditLogRow.__table__
feature_builds_table = FeatureBuildRow.__table__
promotions_table = PromotionRow.__table__


class ProviderUsageRow(Base):
    """Calls and credits one provider used on one UTC day (table ``provider_usage``).

    ``failures`` counts calls that ended in an error, ``rate_limited`` those refused with 429 (or
    the provider's own throttling note). ``updated_at`` is epoch milliseconds UTC.
    """

    __tablename__ = "provider_usage"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, nullable=False)
    credits: Mapped[float] = mapped_column(Float, nullable=False)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    rate_limited: Mapped[int] = mapped_column(Integer, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ProviderStateRow(Base):
    """The circuit breaker of one provider as last seen (table ``provider_state``).

    ``state`` is ``closed``, ``open`` or ``half_open``; ``opened_at`` and ``updated_at`` are epoch
    milliseconds UTC.
    """

    __tablename__ = "provider_state"
    __table_args__ = (CheckConstraint("state IN ('closed', 'open', 'half_open')", name="state"),)

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False)
    opened_at: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ProviderDiscrepancyRow(Base):
    """One bar field on which two providers disagree beyond the tolerance (table
    ``provider_discrepancies``). ``ts`` and ``detected_at`` are epoch milliseconds UTC;
    ``rel_diff`` is ``|secondary - primary| / |primary|``; ``action`` the policy applied."""

    __tablename__ = "provider_discrepancies"
    __table_args__ = (Index("ix_provider_discrepancies_symbol_timeframe_ts", "symbol", "timeframe", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    field: Mapped[str] = mapped_column(String(16), nullable=False)
    primary_provider: Mapped[str] = mapped_column(String(32), nullable=False)
    secondary_provider: Mapped[str] = mapped_column(String(32), nullable=False)
    primary_value: Mapped[float] = mapped_column(Float, nullable=False)
    secondary_value: Mapped[float] = mapped_column(Float, nullable=False)
    rel_diff: Mapped[float] = mapped_column(Float, nullable=False)
    tolerance: Mapped[float] = mapped_column(Float, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    detected_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BarReplacementRow(Base):
    """One stored bar replaced by another source's different values (table ``bar_replacements``):
    typically a provisional bar that a fallback provider wrote while the asset's primary was down,
    healed when the primary answered again. ``old_*`` are the values replaced (the new ones are in
    ``bars``), ``new_close`` the close that replaced ``old_close``, ``max_rel_diff`` the largest
    relative difference over OHLC. ``trigger`` is what wrote the new values (``ingest``,
    ``backfill``, ``reconcile``). ``ts`` and ``replaced_at`` are epoch milliseconds UTC."""

    __tablename__ = "bar_replacements"
    __table_args__ = (Index("ix_bar_replacements_symbol_timeframe_ts", "symbol", "timeframe", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    old_source: Mapped[str] = mapped_column(Text, nullable=False)
    new_source: Mapped[str] = mapped_column(Text, nullable=False)
    old_open: Mapped[float] = mapped_column(Float, nullable=False)
    old_high: Mapped[float] = mapped_column(Float, nullable=False)
    old_low: Mapped[float] = mapped_column(Float, nullable=False)
    old_close: Mapped[float] = mapped_column(Float, nullable=False)
    old_volume: Mapped[float] = mapped_column(Float, nullable=False)
    new_close: Mapped[float] = mapped_column(Float, nullable=False)
    max_rel_diff: Mapped[float] = mapped_column(Float, nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    replaced_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BarVerificationRow(Base):
    """One cross-check of fetched bars against a second source (table ``bar_verifications``).

    ``status`` is ``verified`` (all compared bars within tolerance), ``discrepant`` or
    ``skipped`` (no second source could be reached; ``reason`` says why, the bars stay
    unverified). ``first_ts``/``last_ts`` bound the compared bars (NULL when skipped before any).
    """

    __tablename__ = "bar_verifications"
    __table_args__ = (
        CheckConstraint("status IN ('verified', 'discrepant', 'skipped')", name="status"),
        Index("ix_bar_verifications_symbol_timeframe", "symbol", "timeframe"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    primary_provider: Mapped[str] = mapped_column(String(32), nullable=False)
    secondary_provider: Mapped[str | None] = mapped_column(String(32))
    first_ts: Mapped[int | None] = mapped_column(BigInteger)
    last_ts: Mapped[int | None] = mapped_column(BigInteger)
    bars_compared: Mapped[int] = mapped_column(Integer, nullable=False)
    discrepancies: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    checked_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BackfillChunkRow(Base):
    """One chunk ``[chunk_start, chunk_end)`` of a backfill (table ``backfill_chunks``).

    ``status`` is ``pending``, ``done`` (stored in the same transaction as its bars) or
    ``failed`` (no provider could deliver it; ``error`` says why). Times are epoch ms UTC.
    """

    __tablename__ = "backfill_chunks"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
        UniqueConstraint("symbol", "timeframe", "chunk_start", "chunk_end", name="uq_backfill_chunks_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    timeframe: Mapped[str] = mapped_column(String(8), nullable=False)
    chunk_start: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chunk_end: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    provider: Mapped[str | None] = mapped_column(String(32))
    rows: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CompanyRow(Base):
    """A company known to SEC EDGAR by its CIK (table ``companies``); ``updated_at`` epoch ms."""

    __tablename__ = "companies"

    cik: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    tickers: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    sic: Mapped[str | None] = mapped_column(String(8))
    fiscal_year_end: Mapped[str | None] = mapped_column(String(4))
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CompanyFilingRow(Base):
    """One filing from a company's EDGAR submissions (table ``company_filings``).

    Dates are ``YYYY-MM-DD`` strings as EDGAR writes them (``report_date`` may be empty).
    """

    __tablename__ = "company_filings"
    __table_args__ = (Index("ix_company_filings_cik_filing_date", "cik", "filing_date"),)

    accession: Mapped[str] = mapped_column(String(32), primary_key=True)
    cik: Mapped[str] = mapped_column(String(10), nullable=False)
    form: Mapped[str] = mapped_column(String(32), nullable=False)
    filing_date: Mapped[str] = mapped_column(String(10), nullable=False)
    report_date: Mapped[str] = mapped_column(String(10), nullable=False)
    primary_document: Mapped[str] = mapped_column(Text, nullable=False)


class CompanyFactRow(Base):
    """One reported value of one XBRL concept from EDGAR company facts (table ``company_facts``).

    ``period_start`` is empty for instant facts; dates are ``YYYY-MM-DD``; ``filed`` is when the
    value became public (use it, not ``period_end``, for point-in-time features).
    """

    __tablename__ = "company_facts"
    __table_args__ = (
        UniqueConstraint(
            "cik",
            "taxonomy",
            "concept",
            "unit",
            "accession",
            "period_start",
            "period_end",
            name="uq_company_facts_fact",
        ),
        Index("ix_company_facts_cik_concept", "cik", "concept"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cik: Mapped[str] = mapped_column(String(10), nullable=False)
    taxonomy: Mapped[str] = mapped_column(String(32), nullable=False)
    concept: Mapped[str] = mapped_column(String(256), nullable=False)
    unit: Mapped[str] = mapped_column(String(64), nullable=False)
    period_start: Mapped[str] = mapped_column(String(10), nullable=False)
    period_end: Mapped[str] = mapped_column(String(10), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    fiscal_year: Mapped[int | None] = mapped_column(Integer)
    fiscal_period: Mapped[str | None] = mapped_column(String(8))
    form: Mapped[str | None] = mapped_column(String(32))
    filed: Mapped[str] = mapped_column(String(10), nullable=False)
    accession: Mapped[str] = mapped_column(String(32), nullable=False)
    frame: Mapped[str | None] = mapped_column(String(16))


class CorporateActionRow(Base):
    """One corporate action of one symbol (table ``corporate_actions``); only splits so far.

    ``ex_date`` is 00:00 UTC of the first session trading on the new basis, in epoch milliseconds
    like ``bars.ts``; ``ratio`` is new shares per old share (2.0 for a 2-for-1 split, 0.1 for a
    1-for-10 reverse split: prices before ``ex_date`` divide by it). ``source`` is the provider
    that reported it or ``manual``; ``recorded_at`` (epoch ms UTC) when the row was last written.
    """

    __tablename__ = "corporate_actions"
    __table_args__ = (CheckConstraint("ratio > 0", name="ratio"),)

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ex_date: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ratio: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(String(64), nullable=False)
    recorded_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ApiKeyRow(Base):
    """One API key of the REST service (table ``api_keys``): only its SHA-256 hash is kept.

    ``prefix`` (the key's first characters) identifies it in listings; ``revoked_at`` (epoch ms UTC)
    is set when it is revoked; ``created_at`` likewise.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class PredictionRow(Base):
    """One answer of the REST service (table ``predictions``), written by a background writer.

    ``output`` is the model's answer as JSON (e.g. ``{"forecast_log_return": ..., "prob_up": ...}``);
    ``features`` the raw (unscaled) feature row at ``bar_ts`` as JSON, the input drift is measured
    on; ``shadow`` is 1 for a challenger scored in shadow mode (logged, never returned);
    ``key_id`` is the caller's API key (None with auth off); ``served_at`` and ``bar_ts`` are epoch
    ms UTC; ``latency_ms`` is the request's time up to its answer.
    """

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_model_served_at", "model", "served_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    served_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    alias: Mapped[str] = mapped_column(String(32), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    bar_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output: Mapped[str] = mapped_column(Text, nullable=False)
    features: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shadow: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


# -- paper execution (migration 0009) --------------------------------------------------------------
# The string values of execution.orders' enums (OrderStatus, OrderType, TimeInForce, Side): storage
# sits below execution and cannot import it; tests/unit/test_oms.py checks both stay equal.
ORDER_STATUSES: tuple[str, ...] = (
    "new",
    "submitted",
    "accepted",
    "partially_filled",
    "filled",
    "rejected",
    "cancelled",
    "expired",
)
OPEN_ORDER_STATUSES: tuple[str, ...] = ("new", "submitted", "accepted", "partially_filled")
"""The statuses an order may still leave (``execution.orders.FINAL_STATES`` are the others)."""


def any_of(column: str, values: tuple[str, ...]) -> str:
    """The SQL condition that ``column`` is one of ``values``, written as equalities joined by OR
    (``(side = 'buy' OR side = 'sell')``), not as ``side IN ('buy', 'sell')``: SQLite builds a
    temporary table for an ``IN`` list each time it evaluates one in a CHECK constraint or a
    partial index's predicate, i.e. for every row written (migration 0019)."""
    return f"({' OR '.join(f'{column} = {v!r}' for v in values)})"


OPEN_ORDERS_WHERE = any_of("status", OPEN_ORDER_STATUSES)
"""The predicate of the partial index ``ix_orders_account_open`` (on ``account``, migration 0018):
only open orders are in it, so an order's index entry is written when it is created and dropped
when it is done (a move between open statuses leaves it), and the index stays as small as the
open book. A query uses it when its WHERE has this very term (SQLite matches a partial index's
predicate by its form). Equalities joined by OR, not ``status IN (...)``, since migration 0019:
SQLite evaluates the predicate on every insert and for the old and the new row of every status
change, and builds a temporary table of an ``IN`` list each time (about 1.5 us an insert and
3 us a transition)."""
ORDER_TYPES: tuple[str, ...] = ("market", "limit", "stop", "stop_limit")
TIMES_IN_FORCE: tuple[str, ...] = ("gtc", "day", "ioc")
SIDES: tuple[str, ...] = ("buy", "sell")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AccountRow(Base):
    """One trading account (table ``accounts``): its currency, the cash it started with and the
    cash it holds now (every fill's cash flow, fees included, is applied in the fill's
    transaction). ``created_at`` is epoch milliseconds UTC."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("initial_cash >= 0", name="initial_cash"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    base_currency: Mapped[str] = mapped_column(String(8), nullable=False)
    initial_cash: Mapped[float] = mapped_column(Float, nullable=False)
    cash: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class OrderRow(Base):
    """One order of the paper desk (table ``orders``).

    ``id`` is the OMS's order id; ``client_order_id`` the caller's idempotency key, unique per
    account. ``status``, ``type``, ``time_in_force`` and ``side`` hold the string values of
    :mod:`execution.orders`' enums. ``quantity`` is in units of the asset (> 0; ``side`` gives the
    direction), ``filled_quantity`` what has been filled so far (0 to ``quantity``) at the
    volume-weighted ``avg_fill_price`` (NULL before the first fill). ``take_profit`` and
    ``stop_loss`` make a bracket parent; its children carry ``parent_id`` and share an
    ``oco_group``. ``reject_code``/``reject_reason`` say why a risk check or the broker refused it.
    ``decided_at``, ``created_at`` and ``updated_at`` are epoch milliseconds UTC.
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(any_of("status", ORDER_STATUSES), name="status"),
        CheckConstraint(any_of("type", ORDER_TYPES), name="type"),
        CheckConstraint(any_of("time_in_force", TIMES_IN_FORCE), name="time_in_force"),
        CheckConstraint(any_of("side", SIDES), name="side"),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("filled_quantity >= 0 AND filled_quantity <= quantity", name="filled_quantity"),
        UniqueConstraint("account", "client_order_id", name="uq_orders_account_client_order_id"),
        Index("ix_orders_account_open", "account", sqlite_where=text(OPEN_ORDERS_WHERE),
              postgresql_where=text(OPEN_ORDERS_WHERE)),
        Index("ix_orders_parent_id", "parent_id", sqlite_where=text("parent_id IS NOT NULL"),
              postgresql_where=text("parent_id IS NOT NULL")),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    side: Mapped[str] = mapped_column(String(4), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    time_in_force: Mapped[str] = mapped_column(String(8), nullable=False)
    quantity: Mapped[float] = mapped_column(Float, nullable=False)
    filled_quantity: Mapped[float] = mapped_column(Float, nullable=False)
    avg_fill_price: Mapped[float | None] = mapped_column(Float)
    limit_price: Mapped[float | None] = mapped_column(Float)
    stop_price: Mapped[float | None] = mapped_column(Float)
    take_profit: Mapped[float | None] = mapped_column(Float)
    stop_loss: Mapped[float | None] = mapped_column(Float)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"))
    oco_group: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reject_code: Mapped[str | None] = mapped_column(String(64))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(32))
    confidence: Mapped[float | None] = mapped_column(Float)
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class FillRow(Base):
    """One execution of (part of) an order (table ``fills``).

    ``broker_fill_id`` is the broker's id of the execution and, with ``account``, the fill's
    idempotency key: a replayed fill is recognised and never counted twice. Unique per account, as
    a broker's execution ids are (two paper accounts trading the same symbol on the same bars get
    the same ids from their paper brokers). ``quantity`` (> 0, units) at ``price``
    (> 0) with ``fee``, both in the asset's quote currency; ``fx_rate`` converts them into the
    account's currency (the close of the last FX bar completed at the fill's time; 1 for an asset
    quoted in the account's currency). ``side`` and ``symbol`` repeat the order's. ``ts`` is the
    execution time (bar time for the paper broker) and ``recorded_at`` when it was stored, both
    epoch milliseconds UTC.
    """

    __tablename__ = "fills"
    __table_args__ = (
        CheckConstraint(_in("side", SIDES), name="side"),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("price > 0", name="price"),
        UniqueConstraint("account", "broker_fill_id", name="uq_fills_account_broker_fill_id"),
        # no index by order (migration 0020): nothing reads fills by order; one b-tree less per fill
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"), nullable=False)
    symbol: Mapped[str] = mapped_column(String(32), nullable=False)
    side: Mapped[str] = mapped_column(String(4), nullable=False)
    quantity: Mapped[float] = mapped_column(Float, nullable=False)
    price: Mapped[float] = mapped_column(Float, nullable=False)
    fee: Mapped[float] = mapped_column(Float, nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    broker_fill_id: Mapped[str] = mapped_column(String(128), nullable=False)
    recorded_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    fx_rate: Mapped[float] = mapped_column(Float, nullable=False, server_default="1")


class PositionRow(Base):
    """What one account holds of one symbol (table ``positions``): ``quantity`` in units (negative
    when short), ``avg_cost`` the average entry price of the open quantity (0 when flat),
    ``realised_pnl`` the profit taken on reductions and flips, gross of fees (fees are in
    ``fills`` and in cash), both in the asset's quote currency; ``avg_cost_base`` and
    ``realised_pnl_base`` the same in the account's currency, each fill at its own ``fx_rate`` (so
    the realised P&L in base includes the FX move). ``updated_at`` is epoch milliseconds UTC."""

    __tablename__ = "positions"

    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float, nullable=False)
    avg_cost: Mapped[float] = mapped_column(Float, nullable=False)
    realised_pnl: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    avg_cost_base: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    realised_pnl_base: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")


class EquityHistoryRow(Base):
    """One mark of an account (table ``equity_history``): ``cash``, the ``market_value`` of its
    positions at the prices of the mark, and ``equity`` = cash + market value; ``ts`` is epoch
    milliseconds UTC."""

    __tablename__ = "equity_history"
    __table_args__ = ({"sqlite_with_rowid": False},)  # the key is the table: one b-tree (0018)

    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    cash: Mapped[float] = mapped_column(Float, nullable=False)
    market_value: Mapped[float] = mapped_column(Float, nullable=False)
    equity: Mapped[float] = mapped_column(Float, nullable=False)


class TradingStateRow(Base):
    """The kill switch of one account (table ``trading_state``): ``halted`` is 1 while trading is
    halted (``fks halt``), 0 after ``fks resume``; ``reason`` says why, ``at`` (epoch ms UTC)
    when it was last set. No row means trading is allowed. Not tied to ``accounts``: an account
    can be halted before its first order."""

    __tablename__ = "trading_state"
    __table_args__ = (CheckConstraint("halted IN (0, 1)", name="halted"),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    halted: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class DeskCycleRow(Base):
    """One finished cycle of the paper desk (table ``desk_cycles``): the decision bar ``ts``
    (epoch ms UTC, the open time of the last bar the decisions saw), when the cycle finished,
    how many orders it sent and refused, and the equity it marked. The last row of an account is
    the desk's cursor: a restarted replay goes on after it."""

    __tablename__ = "desk_cycles"

    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    finished_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    orders: Mapped[int] = mapped_column(Integer, nullable=False)
    refusals: Mapped[int] = mapped_column(Integer, nullable=False)
    equity: Mapped[float] = mapped_column(Float, nullable=False)


class DeskTargetRow(Base):
    """What the desk decided for one symbol in one cycle (table ``desk_targets``): the served
    model and version that answered, its forecast and probability of a rise (null for an
    allocator), the target weight (fraction of the account), and the signed quantity it ordered
    under ``client_order_id`` (0 and null when the target did not change)."""

    __tablename__ = "desk_targets"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(32), nullable=False)
    forecast: Mapped[float | None] = mapped_column(Float)
    prob_up: Mapped[float | None] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float, nullable=False)
    quantity: Mapped[float] = mapped_column(Float, nullable=False)
    client_order_id: Mapped[str | None] = mapped_column(String(64))


class PaperVenueRow(Base):
    """The paper broker's own state for one account (table ``paper_venues``), as JSON, saved with
    each finished desk cycle: its open orders, cash, positions and last bars. It plays the
    venue's side of a restart: the OMS's books are reconciled against it."""

    __tablename__ = "paper_venues"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)


class MarketQuoteRow(Base):
    """The latest market-wide quote of one coin from a market-data aggregator (table
    ``market_quotes``, written by ``fks market overview`` from CoinMarketCap's listings): its
    ``rank`` by market cap, ``price``, 24-hour ``volume_24h``, ``market_cap`` and
    ``percent_change_24h``, all in ``currency``; ``symbol`` is the aggregator's (``BTC``), matched
    to an asset through its ``provider_symbols``. ``last_updated`` is the aggregator's own time
    and ``fetched_at`` when FKS stored it (epoch ms UTC). Each fetch replaces the coin's row."""

    __tablename__ = "market_quotes"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    volume_24h: Mapped[float | None] = mapped_column(Float, nullable=True)
    market_cap: Mapped[float | None] = mapped_column(Float, nullable=True)
    percent_change_24h: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_updated: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    fetched_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
