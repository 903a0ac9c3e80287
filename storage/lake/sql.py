"""The bridge between the SQL store and the lake: export stored bars, import the lake's bars.

Both keep each bar's ``source``. :func:`export_series` reads the store in one query and hands
the bars to :meth:`storage.lake.dataset.Lake.write`; :func:`import_series` reads the lake
(:func:`storage.lake.dataset.read_lake_series`) and upserts with :func:`upsert_lake_bars`, on the
caller's connection and transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from market.bars import BAR_COLUMNS
from storage._time import to_ms
from storage.bars import UpsertResult, upsert_bars
from storage.lake.dataset import ExportResult, Lake, read_lake_series
from storage.lake.layout import DEFAULT_SOURCE, Moment, check_series, empty_rows, rows_to_bars
from storage.schema import BarRow


@dataclass(frozen=True)
class ImportResult:
    """What an import did to one series: partitions and bars read, and the store's upsert counts."""

    symbol: str
    timeframe: str
    partitions: int
    rows: int
    inserted: int
    updated: int
    unchanged: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def export_series(
    lake: Lake,
    conn: Connection,
    symbol: str,
    timeframe: str,
    start: Moment | None = None,
    end: Moment | None = None,
) -> ExportResult:
    """Export the stored bars of ``symbol``/``timeframe`` with ``start <= ts < end`` to ``lake``.

    Bars keep their ``source``. See :meth:`Lake.write` for what changes in the lake.

    Raises:
        ValueError: for an empty symbol, an unknown timeframe or an invalid start or end.
        LakeError: when the lake cannot be written.
    """
    tf = check_series(symbol, timeframe)
    return lake.write(symbol, tf, _stored_rows(conn, symbol, tf, start, end))


def import_series(
    lake: Lake,
    conn: Connection,
    symbol: str,
    timeframe: str,
    start: Moment | None = None,
    end: Moment | None = None,
) -> ImportResult:
    """Upsert the lake's bars of ``symbol``/``timeframe`` with ``start <= ts < end`` into the store, as read.

    Runs on the caller's connection and transaction (``with engine.begin() as conn``), so a series
    is imported whole or not at all. Bars keep the ``source`` recorded in the lake; importing the
    same bars twice changes nothing. The bars are *not* validated here: ``fks lake import``
    (:mod:`tasks.lake`) reads them with :func:`read_lake_series`, screens them with the ``bars``
    suite and stores only the good ones with :func:`upsert_lake_bars`.

    Raises:
        ValueError: for an empty symbol, an unknown timeframe or an invalid start or end.
        LakeError: when a partition cannot be read (the message names it).
    """
    tf = check_series(symbol, timeframe)
    bars, partitions = read_lake_series(lake, symbol, tf, start, end)
    result = upsert_lake_bars(conn, symbol, tf, bars)
    first, last = (bars.index[0], bars.index[-1]) if len(bars) else (None, None)
    return ImportResult(
        symbol,
        tf,
        partitions,
        result.received,
        result.inserted,
        result.updated,
        result.unchanged,
        first,
        last,
    )


def upsert_lake_bars(conn: Connection, symbol: str, timeframe: str, bars: pd.DataFrame) -> UpsertResult:
    """Upsert canonical ``bars`` with a ``source`` column, each bar keeping its own source.

    One :func:`storage.bars.upsert_bars` per source, all on the caller's connection and
    transaction; returns the summed counts. Bars without a source column are stored as ``lake``.

    Raises:
        ValueError: for an empty symbol, an unknown timeframe or a frame that is not canonical.
    """
    tf = check_series(symbol, timeframe)
    if "source" not in bars.columns:
        bars = bars.assign(source=DEFAULT_SOURCE)
    totals = [0, 0, 0, 0]
    for source, group in bars.groupby("source", sort=True):
        result: UpsertResult = upsert_bars(conn, symbol, tf, group[list(BAR_COLUMNS)], source=str(source))
        for i, n in enumerate((result.received, result.inserted, result.updated, result.unchanged)):
            totals[i] += n
    return UpsertResult(received=totals[0], inserted=totals[1], updated=totals[2], unchanged=totals[3])


def _stored_rows(
    conn: Connection,
    symbol: str,
    timeframe: str,
    start: Moment | None,
    end: Moment | None,
) -> pd.DataFrame:
    """Stored bars as a canonical frame plus their ``source`` column, read in one query."""
    query = (
        select(BarRow.ts, *(getattr(BarRow, c) for c in BAR_COLUMNS), BarRow.source)
        .where(BarRow.symbol == symbol, BarRow.timeframe == timeframe)
        .order_by(BarRow.ts)
    )
    if start is not None:
        query = query.where(BarRow.ts >= to_ms(start, "start"))
    if end is not None:
        query = query.where(BarRow.ts < to_ms(end, "end"))
    rows = empty_rows()
    result = conn.execute(query).all()
    if result:
        columns = list(zip(*result, strict=True))
        rows = pd.DataFrame({"ts": np.asarray(columns[0], dtype=np.int64)})
        for i, c in enumerate(BAR_COLUMNS, start=1):
            rows[c] = np.asarray(columns[i], dtype=np.float64)
        rows["source"] = np.asarray(columns[-1], dtype=object)
    return rows_to_bars(rows, with_source=True)
