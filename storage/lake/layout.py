"""The lake's layout and Parquet codec: where a bar goes, and the bytes of a partition file.

Layout, one file per partition (Hive-style, readable by pyarrow, DuckDB and Spark)::

    <root>/symbol=<SYMBOL>/timeframe=<tf>/date=<partition>/bars.parquet

The partition is a UTC day (``2024-01-31``) for ``1m`` bars, a month (``2024-01``) for ``1h``
and a year (``2024``) for ``1d``. Symbols are percent-encoded. Inside the lake, bars travel as
*rows*: a frame with ``ts`` in epoch milliseconds, the float bar columns and ``source``;
:func:`bars_to_rows` and :func:`rows_to_bars` convert from and to canonical bar frames
(:mod:`market.bars`), :func:`encode_partition` and :func:`decode_partition` to and from the
deterministic Parquet bytes of one file. Pure: no I/O.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market.bars import BAR_COLUMNS, Timeframe, as_utc_index, canonical_bars
from storage._time import NS_PER_MS, from_ms, to_ms
from storage.lake.errors import LakeError

#: A point in time: a timestamp, a datetime or an ISO string; naive values are UTC.
Moment = pd.Timestamp | datetime | str

FILE_NAME = "bars.parquet"
DEFAULT_SOURCE = "lake"
#: numpy datetime unit of the partition of each timeframe: a day, a month, a year.
PARTITION_UNITS: dict[str, str] = {"1m": "D", "1h": "M", "1d": "Y"}

_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        *(pa.field(c, pa.float64(), nullable=False) for c in BAR_COLUMNS),
        pa.field("source", pa.string(), nullable=False),
    ]
)
_LABEL_PATTERNS = {"D": r"\d{4}-\d{2}-\d{2}", "M": r"\d{4}-\d{2}", "Y": r"\d{4}"}
_LABEL_FORMATS = {"D": "YYYY-MM-DD", "M": "YYYY-MM", "Y": "YYYY"}
_KEY_RE = re.compile(
    r"symbol=(?P<symbol>[^/]+)/timeframe=(?P<timeframe>[^/]+)/date=(?P<label>[^/]+)/bars\.parquet"
)


@dataclass(frozen=True)
class Partition:
    """One file of the lake: a series' bars in ``[start, end)`` (UTC), stored under ``key``."""

    symbol: str
    timeframe: str
    label: str
    key: str
    start: pd.Timestamp
    end: pd.Timestamp


# ------------------------------------------------------------------------------------------- layout


def partition_label(ts: pd.Timestamp, timeframe: str) -> str:
    """The partition of a bar opening at ``ts`` (UTC): ``YYYY-MM-DD`` for 1m, ``YYYY-MM`` for 1h,
    ``YYYY`` for 1d.

    Raises:
        ValueError: for an unknown timeframe or an invalid timestamp.
    """
    unit = PARTITION_UNITS[Timeframe.parse(timeframe).value]
    return str(np.datetime64(to_ms(ts), "ms").astype(f"datetime64[{unit}]"))


def partition_bounds(label: str, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` (UTC) of the partition ``label`` of ``timeframe``.

    Raises:
        ValueError: for an unknown timeframe or a label that is not a date of the partition's unit.
    """
    unit = PARTITION_UNITS[Timeframe.parse(timeframe).value]
    if not isinstance(label, str) or not re.fullmatch(_LABEL_PATTERNS[unit], label):
        raise ValueError(f"partition {label!r} of {timeframe} bars must look like {_LABEL_FORMATS[unit]}")
    first = np.array([label], dtype=f"datetime64[{unit}]")
    lo, hi = np.concatenate([first, first + 1]).astype("datetime64[ms]").astype(np.int64).tolist()
    return from_ms(lo), from_ms(hi)


def partition_key(symbol: str, timeframe: str, label: str) -> str:
    """The object key (relative to the lake root) of a partition file."""
    return f"{series_prefix(symbol, timeframe)}date={label}/{FILE_NAME}"


def series_prefix(symbol: str, timeframe: str | None) -> str:
    """The key prefix of a symbol's partitions (of one timeframe, or of all when None)."""
    prefix = f"symbol={quote(symbol, safe='-_.')}/"
    return f"{prefix}timeframe={timeframe}/" if timeframe else prefix


def make_partition(symbol: str, timeframe: str, label: str) -> Partition:
    """The :class:`Partition` ``label`` of a series. Raises ValueError as :func:`partition_bounds`."""
    start, end = partition_bounds(label, timeframe)
    return Partition(symbol, timeframe, label, partition_key(symbol, timeframe, label), start, end)


def parse_key(key: str) -> Partition | None:
    """The partition stored under ``key``; None for a key that is not a partition file of a
    known timeframe.

    Raises:
        ValueError: when the partition's date does not match its timeframe.
    """
    match = _KEY_RE.fullmatch(key)
    if match is None:
        return None
    symbol, tf, label = unquote(match["symbol"]), match["timeframe"], match["label"]
    if tf not in PARTITION_UNITS:
        return None
    start, end = partition_bounds(label, tf)
    return Partition(symbol, tf, label, key, start, end)


def check_series(symbol: str, timeframe: str) -> str:
    """The canonical timeframe of a series; raises ValueError for an empty symbol or an unknown timeframe."""
    if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} must be a non-empty string without surrounding spaces")
    return Timeframe.parse(timeframe).value


def epoch_ms(ts: pd.Timestamp) -> int:
    """Epoch milliseconds of a UTC timestamp (a partition bound)."""
    return int(ts.value // NS_PER_MS)


# --------------------------------------------------------------------------------------------- rows


def empty_rows() -> pd.DataFrame:
    """Rows with no bar, with the row columns and dtypes."""
    frame = pd.DataFrame({"ts": np.array([], dtype=np.int64)})
    for c in BAR_COLUMNS:
        frame[c] = np.array([], dtype=np.float64)
    frame["source"] = np.array([], dtype=object)
    return frame


def bars_to_rows(bars: pd.DataFrame, source: str) -> pd.DataFrame:
    """Canonical bars (plus an optional ``source`` column) → rows with ``ts`` in epoch ms.

    Raises:
        ValueError: when ``source`` is blank, ``bars`` is not canonical or has a timestamp finer
            than a millisecond.
    """
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source {source!r} must name where the bars came from")
    frame = canonical_bars(bars)
    ns = pd.DatetimeIndex(frame.index).asi8
    if len(ns) and np.any(ns % NS_PER_MS):
        raise ValueError("bar timestamps finer than a millisecond cannot go to the lake; round them to ms")
    rows = pd.DataFrame({"ts": ns // NS_PER_MS})
    for c in BAR_COLUMNS:
        rows[c] = frame[c].to_numpy(dtype=np.float64)
    rows["source"] = _aligned_sources(bars, frame.index, source)
    return rows


def _aligned_sources(bars: pd.DataFrame, index: pd.Index, default: str) -> np.ndarray:
    """The ``source`` column of ``bars`` in the order of the canonical ``index``; blanks → ``default``."""
    if "source" not in bars.columns:
        return np.full(len(index), default, dtype=object)
    keyed = bars.set_index("ts") if "ts" in bars.columns else bars
    stamps = as_utc_index(keyed.index)
    series = pd.Series(keyed["source"].to_numpy(dtype=object), index=stamps.as_unit("ns"))
    if not series.index.equals(index):
        series = series.reindex(index)
    return np.array([str(v) if isinstance(v, str) and v else default for v in series], dtype=object)


def rows_to_bars(rows: pd.DataFrame, with_source: bool) -> pd.DataFrame:
    """Rows → a canonical bar frame (plus ``source`` when ``with_source``).

    Raises:
        LakeError: when the rows repeat a bar or are otherwise not canonical.
    """
    index = pd.DatetimeIndex(
        (rows["ts"].to_numpy(dtype=np.int64) * NS_PER_MS).view("datetime64[ns]"), name="ts"
    )
    frame = pd.DataFrame(
        {c: rows[c].to_numpy(dtype=np.float64) for c in BAR_COLUMNS}, index=index.tz_localize("UTC")
    )
    try:
        bars = canonical_bars(frame)
    except ValueError as exc:
        raise LakeError(f"the lake holds inconsistent bars: {exc}") from None
    if with_source:
        sources = pd.Series(rows["source"].to_numpy(dtype=object), index=frame.index)
        bars["source"] = sources.reindex(bars.index).to_numpy(dtype=object)
    return bars


def split_rows(rows: pd.DataFrame, timeframe: str) -> list[tuple[str, pd.DataFrame]]:
    """Sorted rows → ``(partition label, rows)`` per partition, in time order."""
    unit = PARTITION_UNITS[timeframe]
    periods = rows["ts"].to_numpy().astype("datetime64[ms]").astype(f"datetime64[{unit}]")
    cuts = np.flatnonzero(periods[1:] != periods[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(rows)]])
    return [(str(periods[a]), rows.iloc[a:b]) for a, b in zip(starts, ends, strict=True)]


# -------------------------------------------------------------------------------------------- codec


def encode_partition(rows: pd.DataFrame, part: Partition) -> bytes:
    """One partition as Parquet bytes; the same rows always give the same bytes (fixed schema,
    zstd, one row group, no write time in the metadata)."""
    arrays = [pa.array(rows["ts"].to_numpy(dtype=np.int64), type=pa.int64()).cast(_SCHEMA.field("ts").type)]
    arrays += [pa.array(rows[c].to_numpy(dtype=np.float64), type=pa.float64()) for c in BAR_COLUMNS]
    arrays.append(pa.array([str(s) for s in rows["source"]], type=pa.string()))
    meta = {"format": 1, "symbol": part.symbol, "timeframe": part.timeframe, "partition": part.label}
    schema = _SCHEMA.with_metadata({b"fks.lake": json.dumps(meta, sort_keys=True).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=max(len(rows), 1),
        use_dictionary=["source"],
        write_statistics=True,
    )
    return sink.getvalue()


def decode_partition(data: bytes, part: Partition, where: str) -> pd.DataFrame:
    """Parquet bytes of one partition → rows sorted by ``ts``; files without ``source`` read as
    source ``lake``.

    Raises:
        LakeError: when the bytes are not Parquet, lack a column, have a column of the wrong type
            or with nulls, or hold a bar outside the partition; the message names ``where``.
    """
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LakeError(
            f"{where} is not a readable Parquet file ({exc}); delete it and export again"
        ) from None
    missing = [c for c in ("ts", *BAR_COLUMNS) if c not in table.column_names]
    if missing:
        raise LakeError(f"{where} lacks column(s) {', '.join(missing)}; it is not an FKS lake file")
    try:
        ts_col = table.column("ts")
        if not pa.types.is_timestamp(ts_col.type):
            raise TypeError(f"ts is {ts_col.type}, not a timestamp")
        if ts_col.type.tz is None:
            ts_col = ts_col.cast(pa.timestamp(ts_col.type.unit, tz="UTC"))
        ms = ts_col.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        out = pd.DataFrame({"ts": ms.to_numpy()})
        for c in BAR_COLUMNS:
            out[c] = table.column(c).cast(pa.float64()).to_numpy()
        if "source" in table.column_names:
            out["source"] = (
                table.column("source")
                .cast(pa.string())
                .fill_null(DEFAULT_SOURCE)
                .to_numpy(zero_copy_only=False)
            )
        else:
            out["source"] = DEFAULT_SOURCE
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise LakeError(f"{where} has a column of the wrong type or with nulls ({exc})") from None
    if out[["ts", *BAR_COLUMNS]].isna().to_numpy().any():
        raise LakeError(f"{where} has missing values; bars in the lake must be complete")
    lo, hi = epoch_ms(part.start), epoch_ms(part.end)
    outside = (out["ts"] < lo) | (out["ts"] >= hi)
    if outside.any():
        bad = from_ms(int(out.loc[outside, "ts"].iloc[0]))
        raise LakeError(
            f"{where} holds a bar at {bad.isoformat()}, outside its partition {part.label}; "
            "delete the file and export again"
        )
    return out.sort_values("ts", kind="stable", ignore_index=True)
