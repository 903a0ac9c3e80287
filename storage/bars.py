"""The ``bars`` table: idempotent bulk upserts and fast reads of canonical bar frames.

Bars go in and come out as the canonical frame of :mod:`market.bars` (UTC ``ts`` index = bar
open time, float64 ``open, high, low, close, volume``). In the table ``ts`` and ``ingested_at``
are epoch milliseconds UTC, so timestamps finer than a millisecond are rejected.

Writes are upserts on ``(symbol, timeframe, ts)`` that rewrite a stored row only when its values
differ (``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE <values differ>``): running the same
ingestion twice writes nothing and keeps each row's ``ingested_at``. On SQLite the rows go through
the DBAPI ``executemany`` of the caller's connection. On PostgreSQL they are streamed with binary
``COPY`` (the payload built by numpy, no per-row Python): straight into ``bars`` when no bar of
the series is stored in the frame's span (a first load; in a savepoint, so that a concurrent
writer that committed some of those keys first turns it into a merge instead of an error),
otherwise into a temporary staging table (``ON COMMIT DROP``, dropped again as soon as the upsert
is done) merged into ``bars`` by one ``INSERT ... SELECT ... ON CONFLICT`` whose anti-join on the
stored series drops identical rows before they reach the conflict check. Both dialects store the
same rows and return the same counts. The caller owns the transaction (``with engine.begin() as
conn: upsert_bars(conn, ...)``); if anything in it fails, the table is left as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from market.bars import BAR_COLUMNS, Timeframe, canonical_bars, empty_bars
from market.calendars import Calendar, GapReport, find_gaps
from storage._time import NS_PER_MS as _NS_PER_MS
from storage._time import from_ms as _from_ms
from storage._time import to_ms as _to_ms

_SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_READ_DTYPE = np.dtype([("ts", np.int64), *((c, np.float64) for c in BAR_COLUMNS)])
_TS_DTYPE = np.dtype([("ts", np.int64)])

# PostgreSQL's binary COPY format: a fixed header, then per row a big-endian int16 field count and
# per field an int32 byte length and the value's bytes, then an int16 -1. Every row of one upsert
# has the same width (one symbol, timeframe and source), so a batch is one numpy record array.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_CHUNK_BYTES = 1 << 22
_STAGE_TABLE = "fks_bars_stage"
_UNIQUE_VIOLATION = "23505"


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: rows received, newly inserted, changed in place, and left unchanged."""

    received: int
    inserted: int
    updated: int
    unchanged: int


def _check_dialect(conn: Connection) -> str:
    name = conn.dialect.name
    if name not in _SUPPORTED_DIALECTS:
        raise NotImplementedError(
            f"bar store supports SQLite and PostgreSQL, not {name!r}; use a sqlite:/// or postgresql:// URL"
        )
    return name


def _placeholder(conn: Connection) -> str:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(
        f"database driver {conn.dialect.driver!r} uses paramstyle {style!r}; use sqlite3, psycopg or psycopg2"
    )


def _check_key(symbol: str, timeframe: str) -> str:
    if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} must be a non-empty string without surrounding spaces")
    return Timeframe.parse(timeframe).value


def _validated_arrays(bars: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Canonical frame → (ts int64 epoch ms, OHLCV float64 arrays); raises ValueError on bad input."""
    if not isinstance(bars, pd.DataFrame):
        kind = type(bars).__name__
        raise TypeError(f"bars must be a pandas DataFrame in the canonical bar schema, not {kind}")
    frame = canonical_bars(bars)
    index = pd.DatetimeIndex(frame.index)
    ns = index.asi8
    if len(ns) and index.hasnans:
        raise ValueError("bar frame has NaT timestamps; drop them before storing")
    ms = ns // _NS_PER_MS
    if len(ns) and np.any(ns - ms * _NS_PER_MS):
        bad = index[(ns % _NS_PER_MS) != 0][0]
        raise ValueError(
            f"bar timestamp {bad.isoformat()} is finer than a millisecond; round the index to ms first"
        )
    columns = [frame[c].to_numpy(dtype=np.float64, copy=False) for c in BAR_COLUMNS]
    for name, values in zip(BAR_COLUMNS, columns, strict=True):
        finite = np.isfinite(values)
        if not finite.all():
            pos = int(np.argmin(finite))
            raise ValueError(
                f"bar {index[pos].isoformat()} has {name}={values[pos]}; the store keeps only finite "
                "values: drop or fill such bars before storing"
            )
    return ms, columns


def _upsert_sql(dialect: str, ph: str) -> str:
    differs = " IS DISTINCT FROM " if dialect == "postgresql" else " IS NOT "
    changed = " OR ".join(f"bars.{c}{differs}excluded.{c}" for c in (*BAR_COLUMNS, "source"))
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*BAR_COLUMNS, "source", "ingested_at"))
    placeholders = ", ".join([ph] * 10)
    return (
        "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, source, ingested_at) "
        f"VALUES ({placeholders}) "
        f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {updates} WHERE {changed}"
    )


def _count_range(conn: Connection, ph: str, symbol: str, timeframe: str, lo: int, hi: int) -> int:
    sql = f"SELECT COUNT(*) FROM bars WHERE symbol = {ph} AND timeframe = {ph} AND ts >= {ph} AND ts <= {ph}"
    return int(conn.exec_driver_sql(sql, (symbol, timeframe, lo, hi)).scalar_one())


def upsert_bars(
    conn: Connection,
    symbol: str,
    timeframe: str,
    bars: pd.DataFrame,
    source: str,
    ingested_at: pd.Timestamp | None = None,
) -> UpsertResult:
    """Insert or update ``bars`` of ``symbol``/``timeframe`` in one bulk statement; idempotent.

    SQLite: one ``executemany`` upsert. PostgreSQL: binary ``COPY``, straight into ``bars`` when
    nothing of the span is stored, else into a temporary table merged by one set-based upsert.

    ``bars`` is a canonical bar frame (``ts`` index or column, UTC bar open times; naive taken as
    UTC), stored at millisecond resolution. Rows new to the table are inserted; rows whose OHLCV
    or ``source`` differ from what is stored are overwritten and stamped ``ingested_at``
    (default: now, UTC); identical rows are not written at all. Runs on the caller's
    connection and transaction: commit or roll back is the caller's decision, and on any error
    the caller's rollback leaves the table as it was.

    Returns:
        :class:`UpsertResult` with counts of rows received, inserted, updated and unchanged.

    Raises:
        TypeError: when ``bars`` is not a DataFrame.
        ValueError: when the frame is not canonical (missing column, duplicate or NaT timestamp,
            a timestamp finer than a millisecond, a NaN or infinite value), the symbol is empty,
            the timeframe is unknown or the source is empty.
        NotImplementedError: for a database other than SQLite or PostgreSQL.
        sqlalchemy.exc.DBAPIError: subclasses such as ``IntegrityError`` or ``OperationalError``
            from the database (for example a lock timeout).
    """
    dialect = _check_dialect(conn)
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source {source!r} must name where the bars came from (e.g. 'csv', 'binance')")
    ms, (o, h, lo, c, v) = _validated_arrays(bars)
    n = len(ms)
    if n == 0:
        return UpsertResult(received=0, inserted=0, updated=0, unchanged=0)
    stamp = _to_ms(pd.Timestamp.now(tz="UTC") if ingested_at is None else ingested_at, "ingested_at")
    first, last = int(ms[0]), int(ms[-1])

    before = _count_range(conn, ph, symbol, tf, first, last)  # also begins the caller's transaction
    if dialect == "postgresql":
        if before == 0:  # nothing stored in the span: every row is new, COPY straight in
            if _copy_new(conn, symbol, tf, ms, (o, h, lo, c, v), source, stamp):
                return UpsertResult(received=n, inserted=n, updated=0, unchanged=0)
            before = _count_range(conn, ph, symbol, tf, first, last)  # a concurrent writer was first
        changes = _copy_merge(conn, symbol, tf, ms, (o, h, lo, c, v), source, stamp)
        if changes == 0:  # nothing written: no need to count again
            return UpsertResult(received=n, inserted=0, updated=0, unchanged=n)
    else:
        rows = zip(
            repeat(symbol, n),
            repeat(tf, n),
            ms.tolist(),
            o.tolist(),
            h.tolist(),
            lo.tolist(),
            c.tolist(),
            v.tolist(),
            repeat(source, n),
            repeat(stamp, n),
            strict=True,
        )
        cursor: Any = conn.connection.cursor()  # the driver's own cursor: executemany takes any iterable
        try:
            cursor.executemany(_upsert_sql(dialect, ph), rows)
            changes = cursor.rowcount
        except Exception as exc:
            # Surface driver errors as SQLAlchemy's typed errors (IntegrityError, OperationalError, ...).
            raise _wrap_dbapi_error(conn, exc) from exc
        finally:
            cursor.close()
    after = _count_range(conn, ph, symbol, tf, first, last)
    inserted = after - before
    updated = max(changes - inserted, 0) if changes is not None and changes >= 0 else 0
    return UpsertResult(received=n, inserted=inserted, updated=updated, unchanged=n - inserted - updated)


def _copy_rows(fields: Sequence[tuple[str, Any]], n: int) -> np.ndarray:
    """``n`` rows of a binary ``COPY`` as raw bytes (uint8): ``fields`` are (big-endian numpy type,
    value) per column, a value being an array of ``n`` or one ``bytes`` constant for every row."""
    layout: list[tuple[str, str]] = [("count", ">i2")]
    for i, (kind, value) in enumerate(fields):
        layout += [(f"len{i}", ">i4"), (f"val{i}", f"S{len(value)}" if kind == "text" else kind)]
    table = np.empty(n, dtype=np.dtype(layout))
    table["count"] = len(fields)
    for i, (_, value) in enumerate(fields):
        table[f"len{i}"] = table.dtype[f"val{i}"].itemsize
        table[f"val{i}"] = value
    return table.view(np.uint8)


def _copy_in(cursor: Any, sql: str, payload: np.ndarray) -> None:
    """Stream ``payload`` (the rows of :func:`_copy_rows`) through ``COPY ... FROM STDIN (FORMAT BINARY)``."""
    data = payload.data  # a memoryview of the bytes: slices are not copies
    with cursor.copy(sql) as copy:
        copy.write(_COPY_HEADER)
        for offset in range(0, len(data), _COPY_CHUNK_BYTES):
            copy.write(data[offset : offset + _COPY_CHUNK_BYTES])
        copy.write(_COPY_TRAILER)


def _bar_fields(ms: np.ndarray, columns: Sequence[np.ndarray]) -> list[tuple[str, Any]]:
    return [(">i8", ms), *((">f8", values) for values in columns)]


def _copy_new(
    conn: Connection,
    symbol: str,
    timeframe: str,
    ms: np.ndarray,
    columns: Sequence[np.ndarray],
    source: str,
    stamp: int,
) -> bool:
    """PostgreSQL, no stored bar in the span: binary ``COPY`` straight into ``bars``.

    Runs in a savepoint: when a concurrent transaction committed some of these keys first (a
    unique violation), the savepoint is rolled back and False returned, so that the caller merges
    instead. Returns True when every row was inserted.
    """
    driver: Any = conn.connection.driver_connection  # the psycopg 3 connection under SQLAlchemy's
    encoding = driver.info.encoding
    fields = [
        ("text", symbol.encode(encoding)),
        ("text", timeframe.encode(encoding)),
        *_bar_fields(ms, columns),
        ("text", source.encode(encoding)),
        (">i8", stamp),
    ]
    payload = _copy_rows(fields, len(ms))
    sql = (
        "COPY bars (symbol, timeframe, ts, open, high, low, close, volume, source, ingested_at) "
        "FROM STDIN (FORMAT BINARY)"
    )
    try:
        with driver.transaction(), driver.cursor() as cursor:  # a savepoint in the caller's transaction
            _copy_in(cursor, sql, payload)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION:
            return False
        raise _wrap_dbapi_error(conn, exc, "COPY into bars") from exc
    return True


def _stage_sql() -> str:
    values = ", ".join(f"{c} DOUBLE PRECISION NOT NULL" for c in BAR_COLUMNS)
    return f"CREATE TEMPORARY TABLE {_STAGE_TABLE} (ts BIGINT NOT NULL, {values}) ON COMMIT DROP"


def _merge_sql() -> str:
    """One set-based upsert of the staged rows: identical rows are filtered out by an anti-join on
    the stored series (one hash join, not one index probe per row), the rest inserted or updated.

    The anti-join reads only the stored bars of the batch's span (``ts`` between its first and last
    bar: an index range on the primary key, and chunk exclusion on a TimescaleDB hypertable).
    Parameters: symbol, timeframe, source, ingested_at; symbol, timeframe, first ts, last ts, source.
    """
    changed = " OR ".join(f"bars.{c} IS DISTINCT FROM excluded.{c}" for c in (*BAR_COLUMNS, "source"))
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*BAR_COLUMNS, "source", "ingested_at"))
    values = ", ".join(f"s.{c}" for c in BAR_COLUMNS)
    same = " AND ".join(f"b.{c} = s.{c}" for c in BAR_COLUMNS)  # NOT NULL columns: = is NOT DISTINCT
    return (
        "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, source, ingested_at) "
        f"SELECT %s::varchar, %s::varchar, s.ts, {values}, %s::text, %s::bigint FROM {_STAGE_TABLE} s "
        "WHERE NOT EXISTS (SELECT 1 FROM bars b WHERE b.symbol = %s::varchar AND b.timeframe = %s::varchar "
        f"AND b.ts BETWEEN %s::bigint AND %s::bigint AND b.ts = s.ts AND {same} AND b.source = %s::text) "
        f"ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET {updates} WHERE {changed}"
    )


def _copy_merge(
    conn: Connection,
    symbol: str,
    timeframe: str,
    ms: np.ndarray,
    columns: Sequence[np.ndarray],
    source: str,
    stamp: int,
) -> int:
    """PostgreSQL: binary ``COPY`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT``.

    The staging table lives in the caller's transaction (``ON COMMIT DROP``, and dropped right
    after the merge so that another upsert in the same transaction can stage again); a failure
    anywhere leaves the caller's rollback to undo everything. Returns the rows written (inserted
    plus updated), as the driver's ``rowcount`` of the merge.
    """
    driver: Any = conn.connection.driver_connection  # the psycopg 3 connection under SQLAlchemy's
    payload = _copy_rows(_bar_fields(ms, columns), len(ms))
    columns_sql = ", ".join(("ts", *BAR_COLUMNS))
    # An autocommit connection would drop the staging table after each statement: give it one block.
    block: AbstractContextManager[Any] = driver.transaction() if driver.autocommit else nullcontext()
    try:
        with block, driver.cursor() as cursor:
            cursor.execute(_stage_sql())
            _copy_in(cursor, f"COPY {_STAGE_TABLE} ({columns_sql}) FROM STDIN (FORMAT BINARY)", payload)
            span = (int(ms[0]), int(ms[-1]))
            cursor.execute(_merge_sql(), (symbol, timeframe, source, stamp, symbol, timeframe, *span, source))
            changes = int(cursor.rowcount)
            cursor.execute(f"DROP TABLE {_STAGE_TABLE}")
    except Exception as exc:
        raise _wrap_dbapi_error(conn, exc, "COPY upsert into bars") from exc
    return changes


def _wrap_dbapi_error(
    conn: Connection, exc: Exception, what: str = "executemany upsert into bars"
) -> Exception:
    from sqlalchemy import exc as sa_exc

    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return sa_exc.DBAPIError.instance(what, None, exc, dbapi.Error)
    return exc


def _fetch_array(conn: Connection, sql: str, params: tuple[Any, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """Run ``sql`` on the raw DBAPI cursor and stream its rows into a structured numpy array."""
    cursor: Any = conn.connection.cursor()  # the driver's own cursor: iterable over row tuples
    try:
        cursor.execute(sql, params)
        return np.fromiter(cursor, dtype=dtype)
    finally:
        cursor.close()


def _range_filter(ph: str, start: Any, end: Any) -> tuple[str, list[int]]:
    sql, params = "", []
    if start is not None:
        sql += f" AND ts >= {ph}"
        params.append(_to_ms(start, "start"))
    if end is not None:
        sql += f" AND ts < {ph}"
        params.append(_to_ms(end, "end"))
    return sql, params


def _read(conn: Connection, symbol: str, timeframe: str, start: Any, end: Any) -> pd.DataFrame:
    _check_dialect(conn)
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    where, extra = _range_filter(ph, start, end)
    sql = (
        "SELECT ts, open, high, low, close, volume FROM bars "
        f"WHERE symbol = {ph} AND timeframe = {ph}{where} ORDER BY ts"
    )
    table = _fetch_array(conn, sql, (symbol, tf, *extra), _READ_DTYPE)
    if len(table) == 0:
        return empty_bars()
    index = pd.DatetimeIndex((table["ts"] * _NS_PER_MS).view("datetime64[ns]"), name="ts").tz_localize("UTC")
    return pd.DataFrame({c: np.ascontiguousarray(table[c]) for c in BAR_COLUMNS}, index=index)


def read_bars(
    conn_or_engine: Connection | Engine,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Stored bars of ``symbol``/``timeframe`` with ``start <= ts < end`` as a canonical frame.

    ``start`` and ``end`` are timestamps (naive taken as UTC); ``None`` leaves that side open.
    Returns an empty canonical frame when nothing is stored.

    Raises:
        ValueError: when the symbol is empty or the timeframe unknown.
        NotImplementedError: for a database other than SQLite or PostgreSQL.
        sqlalchemy.exc.OperationalError: when the database cannot be read (e.g. not migrated).
    """
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return _read(conn, symbol, timeframe, start, end)
    return _read(conn_or_engine, symbol, timeframe, start, end)


def watermark(conn: Connection, symbol: str, timeframe: str) -> pd.Timestamp | None:
    """Open time (UTC) of the last stored bar of ``symbol``/``timeframe``, or None when there is none.

    Raises:
        ValueError: when the symbol is empty or the timeframe unknown.
    """
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    sql = f"SELECT MAX(ts) FROM bars WHERE symbol = {ph} AND timeframe = {ph}"
    value = conn.exec_driver_sql(sql, (symbol, tf)).scalar_one()
    return None if value is None else _from_ms(value)


def bar_summary(conn: Connection) -> pd.DataFrame:
    """One row per stored series: ``symbol``, ``timeframe``, ``first`` and ``last`` bar open times
    (UTC timestamps) and ``rows`` (bar count), sorted by symbol and timeframe.
    """
    result = conn.exec_driver_sql(
        "SELECT symbol, timeframe, MIN(ts), MAX(ts), COUNT(*) FROM bars "
        "GROUP BY symbol, timeframe ORDER BY symbol, timeframe"
    ).all()
    first = np.array([r[2] for r in result], dtype=np.int64) * _NS_PER_MS
    last = np.array([r[3] for r in result], dtype=np.int64) * _NS_PER_MS
    return pd.DataFrame(
        {
            "symbol": [str(r[0]) for r in result],
            "timeframe": [str(r[1]) for r in result],
            "first": pd.DatetimeIndex(first.view("datetime64[ns]")).tz_localize("UTC"),
            "last": pd.DatetimeIndex(last.view("datetime64[ns]")).tz_localize("UTC"),
            "rows": np.array([r[4] for r in result], dtype=np.int64),
        }
    )


def bar_gaps(conn: Connection, symbol: str, timeframe: str, calendar: Calendar) -> GapReport:
    """Missing and off-calendar bars of a stored series against ``calendar``'s bar grid.

    The span is the series' own first to last bar, so weekends, holidays and closed hours are
    never gaps; see :func:`market.calendars.find_gaps`.

    Raises:
        ValueError: when the symbol is empty or the timeframe unknown.
    """
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    sql = f"SELECT ts FROM bars WHERE symbol = {ph} AND timeframe = {ph} ORDER BY ts"
    ms = _fetch_array(conn, sql, (symbol, tf), _TS_DTYPE)["ts"]
    index = pd.DatetimeIndex((ms * _NS_PER_MS).view("datetime64[ns]"), name="ts").tz_localize("UTC")
    return find_gaps(index, calendar, tf)


def count_bars(conn: Connection, symbol: str | None = None, timeframe: str | None = None) -> int:
    """Number of stored bars, optionally only of ``symbol`` and/or ``timeframe``.

    Raises:
        ValueError: when ``timeframe`` is given but unknown.
    """
    ph = _placeholder(conn)
    sql, params = "SELECT COUNT(*) FROM bars WHERE 1 = 1", []
    if symbol is not None:
        sql += f" AND symbol = {ph}"
        params.append(symbol)
    if timeframe is not None:
        sql += f" AND timeframe = {ph}"
        params.append(Timeframe.parse(timeframe).value)
    return int(conn.exec_driver_sql(sql, tuple(params)).scalar_one())


def delete_bars(conn: Connection, symbol: str, timeframe: str, timestamps: Sequence[pd.Timestamp]) -> int:
    """Delete the bars of ``symbol`` at ``timeframe`` whose open times are in ``timestamps``.

    Used when stored bars fail a re-validation and move to quarantine; the caller owns the
    transaction so that the move is atomic. Returns the number of rows deleted.

    Raises:
        ValueError: for an invalid symbol or timeframe, or a NaT timestamp.
    """
    tf = _check_key(symbol, timeframe)
    if not timestamps:
        return 0
    ph = _placeholder(conn)
    rows = [(symbol, tf, _to_ms(ts, "timestamp")) for ts in timestamps]
    sql = f"DELETE FROM bars WHERE symbol = {ph} AND timeframe = {ph} AND ts = {ph}"
    cursor = conn.exec_driver_sql(sql, rows)
    return int(cursor.rowcount)


def read_bars_with_source(
    conn: Connection,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Stored bars of ``symbol``/``timeframe`` with ``start <= ts < end``: the canonical columns
    plus ``source`` (who wrote each bar), indexed by ``ts`` (UTC). Empty frame when none.

    Raises:
        ValueError: when the symbol is empty or the timeframe unknown.
    """
    _check_dialect(conn)
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    where, extra = _range_filter(ph, start, end)
    sql = (
        "SELECT ts, open, high, low, close, volume, source FROM bars "
        f"WHERE symbol = {ph} AND timeframe = {ph}{where} ORDER BY ts"
    )
    rows = conn.exec_driver_sql(sql, (symbol, tf, *extra)).all()
    index = pd.DatetimeIndex(
        (np.array([r[0] for r in rows], dtype=np.int64) * _NS_PER_MS).view("datetime64[ns]"), name="ts"
    ).tz_localize("UTC")
    frame = pd.DataFrame(
        {c: np.array([r[i + 1] for r in rows], dtype=np.float64) for i, c in enumerate(BAR_COLUMNS)},
        index=index,
    )
    frame["source"] = pd.Series([str(r[6]) for r in rows], index=index, dtype=object)
    return frame


def bars_from_sources(
    conn: Connection, symbol: str, timeframe: str, sources: Sequence[str], since: pd.Timestamp | None = None
) -> pd.DatetimeIndex:
    """Open times (UTC, sorted) of the stored bars of ``symbol``/``timeframe`` whose ``source`` is
    one of ``sources`` (and ``ts >= since`` when given): e.g. the provisional bars that fallback
    providers wrote.

    Raises:
        ValueError: when the symbol is empty or the timeframe unknown.
    """
    ph = _placeholder(conn)
    tf = _check_key(symbol, timeframe)
    names = [s for s in sources if s]
    if not names:
        return pd.DatetimeIndex([], tz="UTC", name="ts")
    where, extra = _range_filter(ph, since, None)
    marks = ", ".join([ph] * len(names))
    sql = (
        f"SELECT ts FROM bars WHERE symbol = {ph} AND timeframe = {ph} AND source IN ({marks}){where} "
        "ORDER BY ts"
    )
    ms = _fetch_array(conn, sql, (symbol, tf, *names, *extra), _TS_DTYPE)["ts"]
    return pd.DatetimeIndex((ms * _NS_PER_MS).view("datetime64[ns]"), name="ts").tz_localize("UTC")
