"""The ``backfill_chunks`` table: a backfill's plan and progress, one row per chunk of history.

A backfill cuts ``[start, end)`` into chunks ``[chunk_start, chunk_end)`` (epoch ms UTC in the
table) aligned to UTC boundaries (:func:`chunk_ranges`), records them as ``pending``
(:func:`plan_chunks`, idempotent thanks to the unique range), and then works through them:
:func:`mark_done` is written in the same transaction as the chunk's bars, so a crash never
leaves a chunk marked done without its bars; :func:`mark_failed` records why no provider could
deliver a chunk. A rerun skips ``done`` chunks and retries ``pending`` and ``failed`` ones
(:func:`pending_chunks`); :func:`missing_ranges` lists the failed ones for people.

Repository functions take a Connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.offsets import BaseOffset
from sqlalchemy import Connection, and_, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from config.backfill import chunk_offset
from market.bars import Timeframe
from storage._time import now_ms as _now_ms
from storage._time import optional_ms as _optional_ms
from storage._time import to_ms as _to_ms
from storage._time import utc as _utc
from storage.schema import BackfillChunkRow

CHUNK_STATUSES: tuple[str, ...] = ("pending", "done", "failed")
_MAX_ERROR_CHARS = 2_000
_MISSING_COLUMNS = ("id", "symbol", "timeframe", "start", "end", "error", "attempts", "updated_at")

Range = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class BackfillChunk:
    """One row of ``backfill_chunks``: the range ``[start, end)`` (UTC) and its progress."""

    id: int
    symbol: str
    timeframe: str
    start: pd.Timestamp
    end: pd.Timestamp
    status: str
    provider: str | None
    rows: int | None
    attempts: int
    error: str | None
    batch_id: str | None
    updated_at: pd.Timestamp


def _offset(chunk: str | BaseOffset) -> BaseOffset:
    return chunk_offset(chunk) if isinstance(chunk, str) else chunk


def _fixed_ns(offset: BaseOffset) -> int | None:
    """The offset's length in ns when it is fixed (``6h``, ``1D``, ``30D``), None when anchored (``MS``)."""
    try:
        return int(offset.nanos)
    except ValueError:
        return None


def chunk_ranges(start: pd.Timestamp | str, end: pd.Timestamp | str, chunk: str | BaseOffset) -> list[Range]:
    """Cut ``[start, end)`` into chunks of length ``chunk`` aligned to UTC boundaries.

    A fixed length (``1D``, ``6h``, ``30D``) is aligned to whole multiples of itself since the
    Unix epoch (``1D`` chunks start at 00:00 UTC, ``6h`` ones at 00/06/12/18 UTC); an anchored one
    (``MS``, ``W``) to its own anchors (``MS``: the 1st of each month). Every boundary inside the
    range is aligned; the first chunk starts at ``start`` and the last ends at ``end``, so a rerun
    with the same bounds finds the same chunks and a wider one reuses every inner chunk. Naive
    times are taken as UTC.

    Raises:
        ValueError: when ``end <= start`` or ``chunk`` is not a positive pandas offset.
    """
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if hi <= lo:
        raise ValueError(f"end ({hi.isoformat()}) must be after start ({lo.isoformat()})")
    inner = [e for e in _aligned_edges(lo, hi, _offset(chunk)) if lo < e < hi]
    bounds = [lo, *inner, hi]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _aligned_edges(lo: pd.Timestamp, hi: pd.Timestamp, offset: BaseOffset) -> list[pd.Timestamp]:
    """Aligned chunk boundaries from the last one at or before ``lo`` to the first at or after ``hi``."""
    step = _fixed_ns(offset)
    if step is not None:
        first = lo.as_unit("ns").value // step * step
        last = -(-hi.as_unit("ns").value // step) * step
        values = np.arange(first, last + 1, step, dtype=np.int64)
        return list(pd.DatetimeIndex(values.view("datetime64[ns]")).tz_localize("UTC"))
    anchor = offset.rollback(lo.normalize())
    edges = pd.date_range(anchor, hi + offset, freq=offset)
    stop = int(np.searchsorted(edges.asi8, hi.as_unit(edges.unit).value, side="left"))
    return list(edges[: stop + 1])


def group_into_chunks(
    ranges: Iterable[Range], chunk: str | BaseOffset, join: pd.Timedelta | None = None
) -> list[Range]:
    """Group ranges ``[start, end)`` by the aligned chunk they fall in (see :func:`chunk_ranges`).

    A range that spans chunk boundaries is split at them (a long hole becomes whole chunks).
    Inside one chunk, pieces that overlap or touch, or lie at most ``join`` apart (default: only
    touching ones), become one range from the first's start to the last's end, so that scattered
    small holes cost one request window instead of one each. Used to fetch the holes of a series
    (``fks backfill --gaps``). Returned in time order.
    """
    offset = _offset(chunk)
    slack = pd.Timedelta(0) if join is None else join
    pieces: dict[pd.Timestamp, list[Range]] = {}
    for start, end in ranges:
        lo, hi = _utc(start, "start"), _utc(end, "end")
        if hi <= lo:
            continue
        for c_start, c_end in pairwise(_aligned_edges(lo, hi, offset)):
            if c_start < hi and c_end > lo:
                pieces.setdefault(c_start, []).append((max(lo, c_start), min(hi, c_end)))
    grouped: list[Range] = []
    for key in sorted(pieces):
        current: Range | None = None
        for lo, hi in sorted(pieces[key]):
            if current is not None and lo - current[1] <= slack:
                current = (current[0], max(current[1], hi))
                continue
            if current is not None:
                grouped.append(current)
            current = (lo, hi)
        if current is not None:
            grouped.append(current)
    return grouped


def _chunk(r: Any) -> BackfillChunk:
    return BackfillChunk(
        id=int(r.id),
        symbol=r.symbol,
        timeframe=r.timeframe,
        start=pd.Timestamp(int(r.chunk_start) * 1_000_000, tz="UTC"),
        end=pd.Timestamp(int(r.chunk_end) * 1_000_000, tz="UTC"),
        status=r.status,
        provider=r.provider,
        rows=r.rows,
        attempts=int(r.attempts),
        error=r.error,
        batch_id=r.batch_id,
        updated_at=pd.Timestamp(int(r.updated_at) * 1_000_000, tz="UTC"),
    )


def _insert_ignoring_known(conn: Connection, rows: list[dict[str, object]]) -> None:
    keys = ["symbol", "timeframe", "chunk_start", "chunk_end"]
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(BackfillChunkRow).on_conflict_do_nothing(index_elements=keys), rows)
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite_insert(BackfillChunkRow).on_conflict_do_nothing(index_elements=keys), rows)
    else:
        raise NotImplementedError(
            f"backfill chunks support SQLite and PostgreSQL, not {conn.dialect.name!r}; "
            "use a sqlite:/// or postgresql:// URL"
        )


def plan_chunks(
    conn: Connection,
    symbol: str,
    timeframe: str,
    ranges: Sequence[Range],
    *,
    batch_id: str | None = None,
) -> list[BackfillChunk]:
    """Record the chunks ``ranges`` of ``symbol``/``timeframe`` as ``pending`` where they are new.

    Idempotent: a range already in the table keeps its status (a ``done`` chunk stays done).
    Returns every chunk of ``ranges`` as stored now (new or not), in time order.

    Raises:
        ValueError: for an unknown timeframe, an empty symbol or a range with ``end <= start``.
    """
    tf = Timeframe.parse(timeframe).value
    if not symbol or symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} must be a non-empty string without surrounding spaces")
    keys: list[tuple[int, int]] = []
    for start, end in ranges:
        lo, hi = _to_ms(start, "chunk start"), _to_ms(end, "chunk end")
        if hi <= lo:
            raise ValueError(f"chunk end ({end}) must be after its start ({start})")
        keys.append((lo, hi))
    if not keys:
        return []
    now = _now_ms()
    rows: list[dict[str, object]] = [
        {
            "symbol": symbol,
            "timeframe": tf,
            "chunk_start": lo,
            "chunk_end": hi,
            "status": "pending",
            "attempts": 0,
            "batch_id": batch_id,
            "updated_at": now,
        }
        for lo, hi in sorted(set(keys))
    ]
    _insert_ignoring_known(conn, rows)
    wanted = set(keys)
    lo_all, hi_all = min(k[0] for k in keys), max(k[1] for k in keys)
    query = (
        select(BackfillChunkRow.__table__)
        .where(
            BackfillChunkRow.symbol == symbol,
            BackfillChunkRow.timeframe == tf,
            BackfillChunkRow.chunk_start >= lo_all,
            BackfillChunkRow.chunk_end <= hi_all,
        )
        .order_by(BackfillChunkRow.chunk_start, BackfillChunkRow.chunk_end)
    )
    return [
        _chunk(row)
        for row in conn.execute(query).all()
        if (int(row.chunk_start), int(row.chunk_end)) in wanted
    ]


def list_chunks(
    conn: Connection,
    symbol: str | None = None,
    timeframe: str | None = None,
    *,
    status: str | Sequence[str] | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> list[BackfillChunk]:
    """Chunks in time order, optionally only those of ``symbol``, ``timeframe``, ``status`` (one or
    several) and lying within ``[start, end)`` (UTC).

    Raises:
        ValueError: for an unknown timeframe or status.
    """
    query = select(BackfillChunkRow.__table__)
    if symbol is not None:
        query = query.where(BackfillChunkRow.symbol == symbol)
    if timeframe is not None:
        query = query.where(BackfillChunkRow.timeframe == Timeframe.parse(timeframe).value)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        unknown = [s for s in wanted if s not in CHUNK_STATUSES]
        if unknown:
            raise ValueError(f"unknown chunk status {unknown[0]!r}: use one of {', '.join(CHUNK_STATUSES)}")
        query = query.where(BackfillChunkRow.status.in_(wanted))
    lo, hi = _optional_ms(start), _optional_ms(end)
    if lo is not None:
        query = query.where(BackfillChunkRow.chunk_start >= lo)
    if hi is not None:
        query = query.where(BackfillChunkRow.chunk_end <= hi)
    query = query.order_by(
        BackfillChunkRow.symbol, BackfillChunkRow.timeframe, BackfillChunkRow.chunk_start, BackfillChunkRow.id
    )
    return [_chunk(row) for row in conn.execute(query).all()]


def pending_chunks(
    conn: Connection,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> list[BackfillChunk]:
    """Chunks of ``symbol``/``timeframe`` still to fetch (``pending`` and ``failed``) that lie within
    ``[start, end)`` (UTC; None leaves that side open), in time order. ``done`` chunks are the
    backfill's watermark and are never returned.

    Raises:
        ValueError: for an unknown timeframe.
    """
    return list_chunks(conn, symbol, timeframe, status=("pending", "failed"), start=start, end=end)


def claim_chunks(conn: Connection, chunk_ids: Sequence[int], batch_id: str) -> None:
    """Stamp ``batch_id`` on the chunks a run is about to work on (for progress); status is kept."""
    if chunk_ids:
        conn.execute(
            update(BackfillChunkRow).where(BackfillChunkRow.id.in_(list(chunk_ids))).values(batch_id=batch_id)
        )


def _mark(conn: Connection, chunk_id: int, values: dict[str, object]) -> None:
    values = {**values, "attempts": BackfillChunkRow.attempts + 1, "updated_at": _now_ms()}
    done = conn.execute(update(BackfillChunkRow).where(BackfillChunkRow.id == chunk_id).values(**values))
    if done.rowcount != 1:
        raise LookupError(f"no backfill chunk with id {chunk_id}; use an id returned by plan_chunks")


def mark_done(
    conn: Connection, chunk_id: int, provider: str, rows: int, *, batch_id: str | None = None
) -> None:
    """Mark chunk ``chunk_id`` done: ``provider`` delivered it and ``rows`` bars were stored.

    Call it in the transaction that stores the chunk's bars. Counts one more attempt.

    Raises:
        LookupError: when no chunk has this id. ValueError: for an empty provider or negative rows.
    """
    if not provider or rows < 0:
        raise ValueError(f"a done chunk needs the provider that delivered it and rows >= 0, got {provider!r}")
    values: dict[str, object] = {"status": "done", "provider": provider, "rows": int(rows), "error": None}
    if batch_id is not None:
        values["batch_id"] = batch_id
    _mark(conn, chunk_id, values)


def mark_failed(conn: Connection, chunk_id: int, error: str, *, batch_id: str | None = None) -> None:
    """Mark chunk ``chunk_id`` failed with ``error`` (no provider could deliver it; never put secrets
    in it; cut to 2,000 characters). A rerun retries it. Counts one more attempt.

    Raises:
        LookupError: when no chunk has this id.
    """
    values: dict[str, object] = {"status": "failed", "error": (str(error) or "failed")[:_MAX_ERROR_CHARS]}
    if batch_id is not None:
        values["batch_id"] = batch_id
    _mark(conn, chunk_id, values)


def missing_ranges(conn: Connection, symbol: str | None = None, timeframe: str | None = None) -> pd.DataFrame:
    """Failed chunks (ranges no provider could deliver) as a frame with columns ``id``, ``symbol``,
    ``timeframe``, ``start``, ``end`` (UTC, end exclusive), ``error``, ``attempts`` and
    ``updated_at``, sorted by symbol, timeframe and start; optionally only of ``symbol``/``timeframe``.

    Raises:
        ValueError: for an unknown timeframe.
    """
    chunks = list_chunks(conn, symbol, timeframe, status="failed")
    frame = pd.DataFrame(
        {
            "id": np.array([c.id for c in chunks], dtype=np.int64),
            "symbol": [c.symbol for c in chunks],
            "timeframe": [c.timeframe for c in chunks],
            "start": pd.DatetimeIndex([c.start for c in chunks], tz="UTC"),
            "end": pd.DatetimeIndex([c.end for c in chunks], tz="UTC"),
            "error": [c.error or "" for c in chunks],
            "attempts": np.array([c.attempts for c in chunks], dtype=np.int64),
            "updated_at": pd.DatetimeIndex([c.updated_at for c in chunks], tz="UTC"),
        },
        columns=list(_MISSING_COLUMNS),
    )
    return frame.reset_index(drop=True)


def chunk_progress(conn: Connection, batch_id: str, since: pd.Timestamp | str) -> tuple[int, int]:
    """``(finished, total)`` chunks of run ``batch_id``: total claimed, and those done or failed at or
    after ``since`` (UTC; the run's start)."""
    since_ms = _to_ms(since, "since")
    finished = func.sum(
        case(
            (
                and_(
                    BackfillChunkRow.updated_at >= since_ms,
                    BackfillChunkRow.status.in_(("done", "failed")),
                ),
                1,
            ),
            else_=0,
        )
    )
    row = conn.execute(select(finished, func.count()).where(BackfillChunkRow.batch_id == batch_id)).one()
    return int(row[0] or 0), int(row[1] or 0)
