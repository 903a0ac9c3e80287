"""The ``validation_results`` table: one row per expectation-suite run over one batch.

A run records the suite and its version, what triggered it (``ingest``, ``validate`` or
``release``), row counts, overall success, one outcome per expectation (``id``, ``severity``,
``success``, ``unexpected_count``, ``reason``) and the missing-bar summary (``gaps``). Outcomes
and gaps are stored as JSON: numpy scalars as Python numbers, timestamps as ISO strings, NaN/±inf
as the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, insert, select

from storage._redact import plain_json
from storage._time import now_ms as _now_ms
from storage.schema import VALIDATION_TRIGGERS, ValidationResultRow


@dataclass(frozen=True)
class ValidationRecord:
    """One row of ``validation_results``; ``created_at`` is a UTC ``pd.Timestamp``."""

    id: int
    batch_id: str
    symbol: str
    timeframe: str
    suite: str
    suite_version: str
    trigger: str
    rows_checked: int
    rows_failed: int
    rows_warned: int
    success: bool
    outcomes: list[dict[str, Any]]
    gaps: dict[str, Any]
    docs_path: str | None
    ingest_run_id: int | None
    created_at: pd.Timestamp


def record_validation(
    conn: Connection,
    *,
    batch_id: str,
    symbol: str,
    timeframe: str,
    suite: str,
    suite_version: str,
    trigger: str,
    rows_checked: int,
    rows_failed: int,
    rows_warned: int,
    success: bool,
    outcomes: Sequence[Mapping[str, Any]],
    gaps: Mapping[str, Any],
    docs_path: str | None,
    ingest_run_id: int | None,
) -> int:
    """Record one suite run and return its id (use it as ``validation_id`` of quarantined rows).

    Raises:
        ValueError: when a name (``batch_id``, ``symbol``, ``timeframe``, ``suite``,
            ``suite_version``) is empty, ``trigger`` is not ``ingest``, ``validate`` or
            ``release``, or a row count is negative.
        TypeError: when a row count is not an int, ``success`` not a bool, ``outcomes`` not a
            sequence of mappings or ``gaps`` not a mapping.
        sqlalchemy.exc.IntegrityError: when ``ingest_run_id`` names no ingest run (the database
            checks foreign keys; on SQLite through ``PRAGMA foreign_keys=ON``).
    """
    for name, value in (
        ("batch_id", batch_id),
        ("symbol", symbol),
        ("timeframe", timeframe),
        ("suite", suite),
        ("suite_version", suite_version),
    ):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if trigger not in VALIDATION_TRIGGERS:
        raise ValueError(f"trigger {trigger!r} is not one of {', '.join(VALIDATION_TRIGGERS)}")
    counts = {"rows_checked": rows_checked, "rows_failed": rows_failed, "rows_warned": rows_warned}
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"{name} must be an int, not {type(count).__name__}")
        if count < 0:
            raise ValueError(f"{name} must not be negative, got {count}")
    if not isinstance(success, bool):
        raise TypeError(f"success must be a bool, not {type(success).__name__}")
    if isinstance(outcomes, str | bytes) or not isinstance(outcomes, Sequence):
        raise TypeError(f"outcomes must be a list of mappings, not {type(outcomes).__name__}")
    for outcome in outcomes:
        if not isinstance(outcome, Mapping):
            raise TypeError(f"every outcome must be a mapping, got {type(outcome).__name__}")
    if not isinstance(gaps, Mapping):
        raise TypeError(f"gaps must be a mapping, not {type(gaps).__name__}")
    result = conn.execute(
        insert(ValidationResultRow).values(
            batch_id=batch_id,
            symbol=symbol,
            timeframe=timeframe,
            suite=suite,
            suite_version=suite_version,
            trigger=trigger,
            success=success,
            outcomes=plain_json(list(outcomes)),
            gaps=plain_json(gaps),
            docs_path=None if docs_path is None else str(docs_path),
            ingest_run_id=ingest_run_id,
            created_at=_now_ms(),
            **counts,
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new validation result's id")
    return int(key[0])


def list_validations(
    conn: Connection, *, batch_id: str | None = None, symbol: str | None = None
) -> list[ValidationRecord]:
    """Recorded suite runs, oldest first, optionally only those of ``batch_id`` and/or ``symbol``."""
    query = select(ValidationResultRow.__table__).order_by(ValidationResultRow.id)
    if batch_id is not None:
        query = query.where(ValidationResultRow.batch_id == batch_id)
    if symbol is not None:
        query = query.where(ValidationResultRow.symbol == symbol)
    return [
        ValidationRecord(
            id=row.id,
            batch_id=row.batch_id,
            symbol=row.symbol,
            timeframe=row.timeframe,
            suite=row.suite,
            suite_version=row.suite_version,
            trigger=row.trigger,
            rows_checked=row.rows_checked,
            rows_failed=row.rows_failed,
            rows_warned=row.rows_warned,
            success=bool(row.success),
            outcomes=[dict(o) for o in row.outcomes],
            gaps=dict(row.gaps),
            docs_path=row.docs_path,
            ingest_run_id=row.ingest_run_id,
            created_at=pd.Timestamp(int(row.created_at) * 1_000_000, tz="UTC"),
        )
        for row in conn.execute(query).all()
    ]


@dataclass(frozen=True)
class WarnedBar:
    """A stored bar that failed a ``warning`` expectation: kept in ``bars``, flagged here."""

    symbol: str
    timeframe: str
    ts: pd.Timestamp
    expectation: str
    reason: str
    validation_id: int
    flagged_at: pd.Timestamp


def list_warnings(
    conn: Connection, *, symbol: str | None = None, timeframe: str | None = None
) -> list[WarnedBar]:
    """Bars flagged by ``warning`` expectations, one per (series, bar, expectation), from the
    latest validation that flagged it; sorted by symbol, timeframe, bar time and expectation.

    Reads the ``rows`` that :func:`record_validation`'s callers store in each warning outcome.
    """
    latest: dict[tuple[str, str, str, str], WarnedBar] = {}
    for record in list_validations(conn, symbol=symbol):
        if timeframe is not None and record.timeframe != timeframe:
            continue
        for outcome in record.outcomes:
            if outcome.get("severity") != "warning":
                continue
            for stamp in outcome.get("rows") or []:
                key = (record.symbol, record.timeframe, str(stamp), str(outcome.get("id")))
                latest[key] = WarnedBar(
                    symbol=record.symbol,
                    timeframe=record.timeframe,
                    ts=pd.Timestamp(stamp),
                    expectation=str(outcome.get("id")),
                    reason=str(outcome.get("reason", "")),
                    validation_id=record.id,
                    flagged_at=record.created_at,
                )
    return sorted(latest.values(), key=lambda w: (w.symbol, w.timeframe, w.ts, w.expectation))
