"""Cross-verification records: ``bar_verifications`` (one row per check of fetched bars against a
second source) and ``provider_discrepancies`` (one row per bar field on which the two disagreed
beyond the tolerance).

The provider manager writes them after each fetch (see :mod:`providers.manager`); ``fks providers
discrepancies`` reads them. Timestamps are stored as epoch milliseconds UTC and returned as UTC
``pd.Timestamp``. The caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Protocol

import pandas as pd
from sqlalchemy import Connection, func, insert, select, text

from storage._time import now_ms as _now_ms
from storage._time import optional_ms as _ms
from storage._time import to_ms as _to_ms
from storage.schema import BarVerificationRow, ProviderDiscrepancyRow

VERIFICATION_STATUSES: tuple[str, ...] = ("verified", "discrepant", "skipped")
DISCREPANCY_ACTIONS: tuple[str, ...] = ("warn", "prefer_primary", "fail")
_MAX_REASON_CHARS = 4_000

DISCREPANCY_COLUMNS: tuple[str, ...] = (
    "id",
    "symbol",
    "timeframe",
    "ts",
    "field",
    "primary_provider",
    "secondary_provider",
    "primary_value",
    "secondary_value",
    "rel_diff",
    "tolerance",
    "action",
    "batch_id",
    "detected_at",
)
VERIFICATION_COLUMNS: tuple[str, ...] = (
    "id",
    "symbol",
    "timeframe",
    "primary_provider",
    "secondary_provider",
    "first_ts",
    "last_ts",
    "bars_compared",
    "discrepancies",
    "status",
    "reason",
    "batch_id",
    "checked_at",
)


class DiscrepancyLike(Protocol):
    """What :func:`record_discrepancies` needs of one discrepancy (``providers.verify.Discrepancy``)."""

    @property
    def ts(self) -> pd.Timestamp: ...

    @property
    def field(self) -> str: ...

    @property
    def primary_value(self) -> float: ...

    @property
    def secondary_value(self) -> float: ...

    @property
    def rel_diff(self) -> float: ...


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def record_verification(
    conn: Connection,
    *,
    symbol: str,
    timeframe: str,
    primary_provider: str,
    secondary_provider: str | None,
    status: str,
    bars_compared: int = 0,
    discrepancies: int = 0,
    first_ts: pd.Timestamp | dt.datetime | None = None,
    last_ts: pd.Timestamp | dt.datetime | None = None,
    reason: str | None = None,
    batch_id: str | None = None,
    checked_at: pd.Timestamp | dt.datetime | None = None,
) -> int:
    """Record one cross-check of ``symbol``'s bars and return its id.

    ``status`` is ``verified`` (every compared bar within tolerance), ``discrepant`` or
    ``skipped`` (no second source; ``reason`` says why). ``first_ts``/``last_ts`` bound the
    compared bars. ``reason`` is cut to 4,000 characters.

    Raises:
        ValueError: for an empty name, an unknown status or a negative count.
        TypeError: when a count is not an int.
    """
    if status not in VERIFICATION_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(VERIFICATION_STATUSES)}")
    result = conn.execute(
        insert(BarVerificationRow).values(
            symbol=_name("symbol", symbol),
            timeframe=_name("timeframe", timeframe),
            primary_provider=_name("primary_provider", primary_provider),
            secondary_provider=secondary_provider or None,
            first_ts=_ms(first_ts),
            last_ts=_ms(last_ts),
            bars_compared=_count("bars_compared", bars_compared),
            discrepancies=_count("discrepancies", discrepancies),
            status=status,
            reason=None if reason is None else reason[:_MAX_REASON_CHARS],
            batch_id=batch_id,
            checked_at=_now_ms() if checked_at is None else _to_ms(checked_at),
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new verification's id")
    return int(key[0])


def record_discrepancies(
    conn: Connection,
    discrepancies: Sequence[DiscrepancyLike],
    *,
    symbol: str,
    timeframe: str,
    primary_provider: str,
    secondary_provider: str,
    tolerance: float,
    action: str,
    batch_id: str | None = None,
    detected_at: pd.Timestamp | dt.datetime | None = None,
) -> int:
    """Record one ``provider_discrepancies`` row per discrepancy; return how many were written.

    ``action`` is the policy applied (``warn``, ``prefer_primary`` or ``fail``). An infinite
    relative difference (the primary value was 0) is stored as a very large number so that every
    backend accepts it.

    Raises:
        ValueError: for an empty name, an unknown action or a negative tolerance.
    """
    if action not in DISCREPANCY_ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(DISCREPANCY_ACTIONS)}")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite fraction >= 0, got {tolerance!r}")
    if not discrepancies:
        return 0
    common = {
        "symbol": _name("symbol", symbol),
        "timeframe": _name("timeframe", timeframe),
        "primary_provider": _name("primary_provider", primary_provider),
        "secondary_provider": _name("secondary_provider", secondary_provider),
        "tolerance": float(tolerance),
        "action": action,
        "batch_id": batch_id,
        "detected_at": _now_ms() if detected_at is None else _to_ms(detected_at),
    }
    rows = [
        {
            **common,
            "ts": _to_ms(d.ts, "discrepancy ts"),
            "field": _name("field", d.field),
            "primary_value": float(d.primary_value),
            "secondary_value": float(d.secondary_value),
            "rel_diff": float(d.rel_diff) if math.isfinite(d.rel_diff) else 1e300,
        }
        for d in discrepancies
    ]
    conn.execute(insert(ProviderDiscrepancyRow), rows)
    return len(rows)


def _frame(rows: Sequence[Sequence[object]], columns: Sequence[str], stamps: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
    for name in stamps:
        frame[name] = pd.to_datetime(frame[name].astype("Int64"), unit="ms", utc=True)
    return frame


def list_discrepancies(
    conn: Connection,
    symbol: str | None = None,
    timeframe: str | None = None,
    *,
    limit: int | None = None,
) -> pd.DataFrame:
    """Recorded discrepancies, newest first (by detection, then bar time), optionally of one
    ``symbol`` and/or ``timeframe`` and at most ``limit`` rows. Columns: ``DISCREPANCY_COLUMNS``
    with ``ts`` and ``detected_at`` as UTC timestamps."""
    table = ProviderDiscrepancyRow.__table__
    query = select(*(table.c[c] for c in DISCREPANCY_COLUMNS))
    if symbol is not None:
        query = query.where(table.c.symbol == symbol)
    if timeframe is not None:
        query = query.where(table.c.timeframe == timeframe)
    query = query.order_by(table.c.detected_at.desc(), table.c.ts.desc(), table.c.id.desc())
    if limit is not None:
        query = query.limit(_count("limit", limit))
    return _frame(conn.execute(query).all(), DISCREPANCY_COLUMNS, ("ts", "detected_at"))


def list_verifications(
    conn: Connection, symbol: str | None = None, timeframe: str | None = None, *, limit: int | None = None
) -> pd.DataFrame:
    """Every recorded cross-check, newest first, optionally of one ``symbol``/``timeframe``.
    Columns: ``VERIFICATION_COLUMNS`` with the timestamps as UTC ``pd.Timestamp`` (NaT when none)."""
    table = BarVerificationRow.__table__
    query = select(*(table.c[c] for c in VERIFICATION_COLUMNS))
    if symbol is not None:
        query = query.where(table.c.symbol == symbol)
    if timeframe is not None:
        query = query.where(table.c.timeframe == timeframe)
    query = query.order_by(table.c.checked_at.desc(), table.c.id.desc())
    if limit is not None:
        query = query.limit(_count("limit", limit))
    return _frame(conn.execute(query).all(), VERIFICATION_COLUMNS, ("first_ts", "last_ts", "checked_at"))


def latest_verifications(conn: Connection) -> pd.DataFrame:
    """The most recent cross-check of each (symbol, timeframe), sorted by symbol and timeframe.
    Columns as :func:`list_verifications`."""
    table = BarVerificationRow.__table__
    newest = select(func.max(table.c.id).label("id")).group_by(table.c.symbol, table.c.timeframe).subquery()
    query = (
        select(*(table.c[c] for c in VERIFICATION_COLUMNS))
        .join(newest, newest.c.id == table.c.id)
        .order_by(table.c.symbol, table.c.timeframe)
    )
    return _frame(conn.execute(query).all(), VERIFICATION_COLUMNS, ("first_ts", "last_ts", "checked_at"))


_DISPUTED_SQL = text(
    "SELECT DISTINCT b.ts FROM bars b JOIN provider_discrepancies d "
    "ON d.symbol = b.symbol AND d.timeframe = b.timeframe AND d.ts = b.ts "
    "WHERE b.symbol = :symbol AND b.timeframe = :timeframe AND b.ts >= :lo AND b.ts < :hi "
    "AND b.source <> :incoming "
    "AND ((d.primary_provider = b.source AND d.secondary_provider = :incoming) "
    "OR (d.primary_provider = :incoming AND d.secondary_provider = b.source)) ORDER BY b.ts"
)


def disputed_bars(
    conn: Connection,
    symbol: str,
    timeframe: str,
    incoming_source: str,
    start: pd.Timestamp | dt.datetime,
    end: pd.Timestamp | dt.datetime,
) -> pd.DatetimeIndex:
    """Open times (UTC, sorted) of the stored bars with ``start <= ts < end`` that ``incoming_source``
    is on record as disagreeing with: the bar's stored ``source`` and ``incoming_source`` are the two
    providers of a ``provider_discrepancies`` row at that bar (in either role).

    Writing ``incoming_source``'s value over such a bar would replace one side of a known dispute
    with the other without a cross-check; see :mod:`ingestion.reconcile`.
    """
    params = {
        "symbol": symbol,
        "timeframe": timeframe,
        "incoming": incoming_source,
        "lo": _to_ms(start, "start"),
        "hi": _to_ms(end, "end"),
    }
    ms = [int(r[0]) for r in conn.execute(_DISPUTED_SQL, params).all()]
    return pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True), name="ts")
