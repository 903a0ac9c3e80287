"""The lake itself: series of bars as partition files in an object store, listed, written and read.

:func:`open_lake` builds a :class:`Lake` over the store its URI names (:mod:`storage.lake.stores`);
the lake keeps the layout and codec of :mod:`storage.lake.layout` and the write semantics the
package documentation describes (:mod:`storage.lake`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd

from market.bars import Timeframe
from storage._time import from_ms, to_ms
from storage.lake.errors import LakeError
from storage.lake.layout import (
    DEFAULT_SOURCE,
    FILE_NAME,
    Moment,
    Partition,
    bars_to_rows,
    check_series,
    decode_partition,
    empty_rows,
    encode_partition,
    epoch_ms,
    make_partition,
    parse_key,
    rows_to_bars,
    series_prefix,
    split_rows,
)
from storage.lake.stores import ObjectStore, StoredObject, open_store

_WORKERS = 8
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ExportResult:
    """What an export did to one series: bars exported, and partitions written, unchanged, deleted.

    ``first`` and ``last`` are the open times (UTC) of the first and last exported bar (None when
    nothing was exported).
    """

    symbol: str
    timeframe: str
    rows: int
    written: int
    unchanged: int
    deleted: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def open_lake(uri: str, endpoint_url: str | None = None) -> Lake:
    """The lake at ``uri``: ``file://PATH``, a bare local path, or ``s3://BUCKET[/PREFIX]``.

    A relative local path is resolved against the working directory now; :attr:`Lake.uri` is then
    ``file:///absolute/path``.

    ``endpoint_url`` is the S3 endpoint (MinIO, moto, ...; ``None`` = boto3's default). Nothing is
    read or connected until the lake is used.

    Raises:
        LakeError: for another scheme (the message lists ``file://`` and ``s3://``), an empty
            path, or a missing or invalid bucket name.
    """
    store, where = open_store(uri, endpoint_url)
    return Lake(store, where)


class Lake:
    """A Parquet lake of bars (see :mod:`storage.lake` for layout and semantics).

    Build one with :func:`open_lake`. Methods are safe to call from several threads.
    """

    def __init__(self, store: ObjectStore, uri: str) -> None:
        self._store = store
        self.uri = uri

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # ------------------------------------------------------------------------------------- listing

    def partitions(
        self,
        symbols: Sequence[str] | None = None,
        timeframe: str | None = None,
        start: Moment | None = None,
        end: Moment | None = None,
    ) -> list[Partition]:
        """Partitions of the lake, sorted by symbol, timeframe and time, optionally only those of
        ``symbols`` and ``timeframe`` that overlap ``[start, end)`` (UTC; naive taken as UTC).

        Raises:
            LakeError: when the lake cannot be listed (missing bucket, no credentials) or holds a
                partition folder whose date does not match its timeframe.
            ValueError: for an unknown timeframe or an invalid start or end.
        """
        tf = Timeframe.parse(timeframe).value if timeframe is not None else None
        lo = to_ms(start, "start") if start is not None else None
        hi = to_ms(end, "end") if end is not None else None
        prefixes = [series_prefix(s, tf) for s in symbols] if symbols else [""]
        found = []
        for prefix in prefixes:
            for obj in self._store.scan(prefix, FILE_NAME):
                part = self._parse(obj.key)
                if part is None or (tf is not None and part.timeframe != tf):
                    continue
                if (lo is None or epoch_ms(part.end) > lo) and (hi is None or epoch_ms(part.start) < hi):
                    found.append(part)
        return sorted(found, key=lambda p: (p.symbol, p.timeframe, p.start))

    def series(
        self, symbols: Sequence[str] | None = None, timeframe: str | None = None
    ) -> list[tuple[str, str]]:
        """The ``(symbol, timeframe)`` pairs the lake holds, sorted, optionally filtered.

        Raises:
            LakeError: as :meth:`partitions` does.
        """
        return sorted({(p.symbol, p.timeframe) for p in self.partitions(symbols, timeframe)})

    def _parse(self, key: str) -> Partition | None:
        try:
            return parse_key(key)
        except ValueError as exc:
            raise LakeError(f"{self.uri.rstrip('/')}/{key}: {exc}; move or delete that folder") from None

    # ------------------------------------------------------------------------------------- writing

    def write(
        self, symbol: str, timeframe: str, bars: pd.DataFrame, source: str = DEFAULT_SOURCE
    ) -> ExportResult:
        """Export canonical ``bars`` of ``symbol``/``timeframe`` to the lake; idempotent.

        The bars' own span (first to last open time) is the window the lake mirrors (see
        :mod:`storage.lake`): partitions reaching outside it are merged, those inside replaced, and
        those inside it with no bar deleted. Unchanged partitions are not rewritten. A ``source``
        column of ``bars`` is stored per row; without one, every row gets ``source``.

        Returns:
            :class:`ExportResult` with counts of bars exported and partitions written, unchanged
            and deleted.

        Raises:
            ValueError: when ``bars`` is not a canonical frame, has a timestamp finer than a
                millisecond, the symbol is empty or the timeframe unknown.
            LakeError: when the lake cannot be written or an existing partition cannot be read.
        """
        tf = check_series(symbol, timeframe)
        rows = bars_to_rows(bars, source)
        if rows.empty:
            return ExportResult(symbol, tf, 0, 0, 0, 0, None, None)
        ts = rows["ts"].to_numpy()
        lo, hi = int(ts[0]), int(ts[-1])
        objects = {o.key: o for o in self._store.scan(series_prefix(symbol, tf), FILE_NAME)}
        jobs = [(make_partition(symbol, tf, label), group) for label, group in split_rows(rows, tf)]
        outcomes = _parallel(lambda job: self._write_partition(job[0], job[1], lo, hi, objects), jobs)
        fresh = {part.key for part, _ in jobs}
        stale = [
            part
            for part in (self._parse(key) for key in objects if key not in fresh)
            if part is not None and epoch_ms(part.start) >= lo and epoch_ms(part.end) - 1 <= hi
        ]
        _parallel(lambda part: self._store.delete(part.key), stale)
        written = sum(outcomes)
        return ExportResult(
            symbol, tf, len(rows), written, len(outcomes) - written, len(stale), from_ms(lo), from_ms(hi)
        )

    def _write_partition(
        self, part: Partition, rows: pd.DataFrame, lo: int, hi: int, existing: dict[str, StoredObject]
    ) -> bool:
        """Write one partition (merged with what lies outside ``[lo, hi]``); True when bytes were written."""
        obj = existing.get(part.key)
        if obj is not None and (epoch_ms(part.start) < lo or epoch_ms(part.end) - 1 > hi):
            old = self._read_partition(part)
            keep = old[(old["ts"] < lo) | (old["ts"] > hi)]
            if not keep.empty:
                rows = pd.concat([keep, rows], ignore_index=True).sort_values("ts", kind="stable")
        data = encode_partition(rows, part)
        if obj is not None and self._store.same(obj, data):
            return False
        self._store.put(part.key, data)
        return True

    # ------------------------------------------------------------------------------------- reading

    def read(
        self,
        symbol: str,
        timeframe: str,
        start: Moment | None = None,
        end: Moment | None = None,
        with_source: bool = False,
    ) -> pd.DataFrame:
        """Bars of ``symbol``/``timeframe`` in the lake with ``start <= ts < end`` (UTC; None = open).

        Returns a canonical bar frame (empty when the lake has none), plus a ``source`` column when
        ``with_source`` is set.

        Raises:
            LakeError: when a partition cannot be read as lake bars (the message names the object)
                or the lake cannot be listed.
            ValueError: for an empty symbol, an unknown timeframe or an invalid start or end.
        """
        return self._read_series(symbol, timeframe, start, end, with_source)[0]

    def _read_series(
        self,
        symbol: str,
        timeframe: str,
        start: Moment | None,
        end: Moment | None,
        with_source: bool,
    ) -> tuple[pd.DataFrame, int]:
        """:meth:`read`, and how many partitions were read."""
        tf = check_series(symbol, timeframe)
        parts = self.partitions([symbol], tf, start, end)
        frames = _parallel(self._read_partition, parts)
        rows = pd.concat(frames, ignore_index=True) if frames else empty_rows()
        if start is not None:
            rows = rows[rows["ts"] >= to_ms(start, "start")]
        if end is not None:
            rows = rows[rows["ts"] < to_ms(end, "end")]
        return rows_to_bars(rows, with_source), len(parts)

    def _read_partition(self, part: Partition) -> pd.DataFrame:
        """The rows of one partition file (``ts`` in epoch ms)."""
        where = f"{self.uri.rstrip('/')}/{part.key}"
        data = self._store.get(part.key)
        if data is None:
            raise LakeError(f"{where} vanished while reading; run the command again")
        return decode_partition(data, part, where)


def read_lake_series(
    lake: Lake,
    symbol: str,
    timeframe: str,
    start: Moment | None = None,
    end: Moment | None = None,
) -> tuple[pd.DataFrame, int]:
    """The lake's bars of ``symbol``/``timeframe`` with ``start <= ts < end``, and the partitions read.

    The frame is canonical (:mod:`market.bars`) plus a ``source`` column (``lake`` where a file
    has none).

    Raises:
        ValueError: for an empty symbol, an unknown timeframe or an invalid start or end.
        LakeError: when a partition cannot be read (the message names it) or the lake cannot be listed.
    """
    return lake._read_series(symbol, timeframe, start, end, with_source=True)


def _parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``[fn(x) for x in items]`` on a few threads (object stores are I/O bound), in order."""
    todo = list(items)
    if len(todo) <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(todo))) as pool:
        return list(pool.map(fn, todo))
