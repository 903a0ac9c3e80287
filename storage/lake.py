"""The Parquet lake: bars as Hive-partitioned Parquet files in a local folder or an S3 bucket.

Where: ``FKS_LAKE_URI`` (:attr:`config.settings.Settings.lake_uri`), one of

- ``file://PATH`` (or a bare path): a local folder; a relative path is relative to the working
  directory (``file://data/lake``), ``file:///abs/path`` is absolute;
- ``s3://BUCKET/PREFIX``: an S3 bucket through boto3. Credentials come from boto3's usual chain
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role, ...); the
  endpoint from ``FKS_S3_ENDPOINT_URL`` (MinIO, moto, any S3-compatible store), else boto3's
  own (``AWS_ENDPOINT_URL_S3``, else AWS).

Layout, one file per partition::

    <root>/symbol=<SYMBOL>/timeframe=<tf>/date=<partition>/bars.parquet

The partition is a UTC day (``2024-01-31``) for ``1m`` bars, a month (``2024-01``) for ``1h`` and
a year (``2024``) for ``1d``: 1,440, about 730 and about 260-365 bars a file, so file counts stay
sane whatever the history length. Symbols are percent-encoded as Hive readers expect (pyarrow,
DuckDB and Spark read the lake as a partitioned dataset). Each file holds the columns ``ts``
(``timestamp[ms, UTC]``, bar open time), ``open, high, low, close, volume`` (float64) and
``source`` (string; files without it read as source ``lake``), sorted by ``ts``.

Files are written deterministically (fixed schema, sorted rows, zstd, no write time in the
metadata), so exporting unchanged bars again produces identical bytes (with the same pyarrow,
whose version is in the file footer). The write is then skipped and counted as unchanged: on S3
when the object's ETag is the MD5 of the new bytes (or, for a multipart upload, the object holds
the same bytes); locally when the file holds the same bytes. A store whose ETags are not MD5s
(SSE-KMS) gets every partition rewritten, with the same content.

Within the span of the exported bars (first to last), the lake mirrors the store: a partition
that reaches outside that span is merged (its rows outside the span are kept, the exported rows
win inside it), a partition inside the span is replaced, and a partition inside the span with no
exported bar is deleted. Nothing outside the span changes, so exporting part of a series never
loses what the lake already holds. Local files are written under a temporary name and renamed,
so readers never see half a file. Reads return canonical bar frames (:mod:`market.bars`)::

    lake = open_lake("s3://research/fks", endpoint_url="http://127.0.0.1:9000")
    with engine.connect() as conn:
        result = export_series(lake, conn, "SPX", "1d")
    with engine.begin() as conn:
        result = import_series(lake, conn, "SPX", "1d")
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, select

from market.bars import BAR_COLUMNS, Timeframe, canonical_bars
from storage._time import NS_PER_MS as _NS_PER_MS
from storage._time import to_ms as _to_ms
from storage.bars import UpsertResult, upsert_bars
from storage.schema import BarRow

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
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_MD5_RE = re.compile(r"[0-9a-f]{32}")
_WORKERS = 8
_T = TypeVar("_T")
_R = TypeVar("_R")


class LakeError(ValueError):
    """The lake cannot be used as configured or holds something unreadable; the message says how to fix it."""


class LakeUnreachable(LakeError):
    """The lake's storage could not be reached (network, endpoint down); retrying may succeed."""


@dataclass(frozen=True)
class Partition:
    """One file of the lake: a series' bars in ``[start, end)`` (UTC), stored under ``key``."""

    symbol: str
    timeframe: str
    label: str
    key: str
    start: pd.Timestamp
    end: pd.Timestamp


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


@dataclass(frozen=True)
class _Object:
    key: str
    etag: str | None


class _ObjectStore(Protocol):
    """Bytes under keys relative to the lake root (POSIX separators)."""

    def scan(self, prefix: str) -> list[_Object]: ...
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def same(self, obj: _Object, data: bytes) -> bool: ...


# --------------------------------------------------------------------------------------------- stores


class _LocalStore:
    """A folder; writes go to a hidden temporary file in the target folder, then are renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _check_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise LakeError(f"lake path {self.root} is a file, not a folder; fix FKS_LAKE_URI")

    def scan(self, prefix: str) -> list[_Object]:
        self._check_root()
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for folder, _dirs, files in os.walk(base):
            for name in files:
                if name == FILE_NAME:
                    found.append(_Object((Path(folder) / name).relative_to(self.root).as_posix(), None))
        return sorted(found, key=lambda o: o.key)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        self._check_root()
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        target = self.root / key
        target.unlink(missing_ok=True)
        folder = target.parent
        while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def same(self, obj: _Object, data: bytes) -> bool:
        path = self.root / obj.key
        try:
            return path.stat().st_size == len(data) and path.read_bytes() == data
        except FileNotFoundError:
            return False


class _S3Store:
    """A bucket and key prefix through a boto3 S3 client; errors become :class:`LakeError`."""

    def __init__(self, client: Any, bucket: str, prefix: str, uri: str, endpoint_url: str | None) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.uri = uri
        self.endpoint = endpoint_url or "the default AWS endpoint"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except Exception as exc:
            raise self._translate(what, exc) from exc

    def _translate(self, what: str, exc: Exception) -> Exception:
        from botocore import exceptions as bex

        if isinstance(exc, bex.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return LakeError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}: create it "
                    f"(e.g. `aws s3 mb s3://{self.bucket}`) or fix FKS_LAKE_URI ({self.uri})"
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return LakeError(
                    f"S3 refused to {what} in bucket {self.bucket!r} ({code}): check the credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
                )
            return exc
        if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
            return LakeError(
                f"no AWS credentials to {what} in s3://{self.bucket}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError | bex.ReadTimeoutError):
            return LakeUnreachable(
                f"cannot reach S3 at {self.endpoint} to {what}: {exc}; check FKS_S3_ENDPOINT_URL "
                "and that the server is running"
            )
        if isinstance(exc, bex.ParamValidationError):
            return LakeError(f"invalid S3 request to {what}: {exc}; check FKS_LAKE_URI ({self.uri})")
        return exc

    def scan(self, prefix: str) -> list[_Object]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0

        def run() -> list[_Object]:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            return [
                _Object(item["Key"][strip:], item.get("ETag"))
                for page in pages
                for item in page.get("Contents", [])
                if item["Key"].endswith("/" + FILE_NAME)
            ]

        return sorted(self._call("list objects", run), key=lambda o: o.key)

    def get(self, key: str) -> bytes | None:
        def run() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return None
            return bytes(response["Body"].read())

        return self._call(f"read {key}", run)

    def put(self, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
        self._call(
            f"write {key}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentMD5=md5,
                ContentType="application/vnd.apache.parquet",
            ),
        )

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def same(self, obj: _Object, data: bytes) -> bool:
        etag = (obj.etag or "").strip('"').lower()
        if _MD5_RE.fullmatch(etag):  # a single-part upload: the ETag is the MD5 of the bytes
            return etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self.get(obj.key) == data  # multipart or encrypted object: compare the bytes


# ----------------------------------------------------------------------------------------------- lake


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
    text = str(uri).strip()
    if not text:
        raise LakeError("the lake URI is empty: set FKS_LAKE_URI to file://PATH or s3://BUCKET/PREFIX")
    if text.startswith("s3://"):
        return _open_s3(text, endpoint_url)
    if text.startswith("file://"):
        path = text.removeprefix("file://")
        if not path:
            raise LakeError(f"lake URI {uri!r} names no folder; e.g. file://data/lake")
        return _open_local(path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text):
        scheme = text.split("://", 1)[0]
        raise LakeError(
            f"lake URI {uri!r} has scheme {scheme}://, which FKS cannot use: use file://PATH for a local "
            "folder or s3://BUCKET/PREFIX for S3 and S3-compatible stores (set FKS_S3_ENDPOINT_URL for MinIO)"
        )
    return _open_local(text)


def _open_local(path: str) -> Lake:
    """A local lake; its URI is absolute (``file:///...``) so messages say where it really is."""
    root = Path(path).expanduser().absolute()
    return Lake(_LocalStore(root), f"file://{root.as_posix()}")


def _open_s3(uri: str, endpoint_url: str | None) -> Lake:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not _BUCKET_RE.fullmatch(bucket):
        raise LakeError(
            f"lake URI {uri!r} does not name a valid bucket: use s3://BUCKET/PREFIX with a bucket name "
            "of 3-63 lowercase letters, digits, dots and hyphens"
        )
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
    return Lake(_S3Store(client, bucket, prefix.strip("/"), uri, endpoint_url), uri)


class Lake:
    """A Parquet lake of bars (see the module docstring for layout and semantics).

    Build one with :func:`open_lake`. Methods are safe to call from several threads.
    """

    def __init__(self, store: _ObjectStore, uri: str) -> None:
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
        lo = _to_ms(start, "start") if start is not None else None
        hi = _to_ms(end, "end") if end is not None else None
        prefixes = [_series_prefix(s, tf) for s in symbols] if symbols else [""]
        found = []
        for prefix in prefixes:
            for obj in self._store.scan(prefix):
                part = self._parse(obj.key)
                if part is None or (tf is not None and part.timeframe != tf):
                    continue
                if (lo is None or _ms(part.end) > lo) and (hi is None or _ms(part.start) < hi):
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
        match = _KEY_RE.fullmatch(key)
        if match is None:
            return None
        symbol, tf, label = unquote(match["symbol"]), match["timeframe"], match["label"]
        if tf not in PARTITION_UNITS:
            return None
        try:
            start, end = partition_bounds(label, tf)
        except ValueError as exc:
            raise LakeError(f"{self.uri.rstrip('/')}/{key}: {exc}; move or delete that folder") from None
        return Partition(symbol, tf, label, key, start, end)

    # ------------------------------------------------------------------------------------- writing

    def write(
        self, symbol: str, timeframe: str, bars: pd.DataFrame, source: str = DEFAULT_SOURCE
    ) -> ExportResult:
        """Export canonical ``bars`` of ``symbol``/``timeframe`` to the lake; idempotent.

        The bars' own span (first to last open time) is the window the lake mirrors (see the module
        docstring): partitions reaching outside it are merged, those inside replaced, and those
        inside it with no bar deleted. Unchanged partitions are not rewritten. A ``source`` column
        of ``bars`` is stored per row; without one, every row gets ``source``.

        Returns:
            :class:`ExportResult` with counts of bars exported and partitions written, unchanged
            and deleted.

        Raises:
            ValueError: when ``bars`` is not a canonical frame, has a timestamp finer than a
                millisecond, the symbol is empty or the timeframe unknown.
            LakeError: when the lake cannot be written or an existing partition cannot be read.
        """
        tf = _check_series(symbol, timeframe)
        rows = _to_rows(bars, source)
        if rows.empty:
            return ExportResult(symbol, tf, 0, 0, 0, 0, None, None)
        ts = rows["ts"].to_numpy()
        lo, hi = int(ts[0]), int(ts[-1])
        objects = {o.key: o for o in self._store.scan(_series_prefix(symbol, tf))}
        jobs = [(_partition(symbol, tf, label), group) for label, group in _split(rows, tf)]
        outcomes = _parallel(lambda job: self._write_partition(job[0], job[1], lo, hi, objects), jobs)
        fresh = {part.key for part, _ in jobs}
        stale = [
            part
            for part in (self._parse(key) for key in objects if key not in fresh)
            if part is not None and _ms(part.start) >= lo and _ms(part.end) - 1 <= hi
        ]
        _parallel(lambda part: self._store.delete(part.key), stale)
        written = sum(outcomes)
        return ExportResult(
            symbol, tf, len(rows), written, len(outcomes) - written, len(stale), _stamp(lo), _stamp(hi)
        )

    def _write_partition(
        self, part: Partition, rows: pd.DataFrame, lo: int, hi: int, existing: dict[str, _Object]
    ) -> bool:
        """Write one partition (merged with what lies outside ``[lo, hi]``); True when bytes were written."""
        obj = existing.get(part.key)
        if obj is not None and (_ms(part.start) < lo or _ms(part.end) - 1 > hi):
            old = self._read_partition(part)
            keep = old[(old["ts"] < lo) | (old["ts"] > hi)]
            if not keep.empty:
                rows = pd.concat([keep, rows], ignore_index=True).sort_values("ts", kind="stable")
        data = _encode(rows, part)
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
        tf = _check_series(symbol, timeframe)
        parts = self.partitions([symbol], tf, start, end)
        frames = _parallel(self._read_partition, parts)
        rows = pd.concat(frames, ignore_index=True) if frames else _empty_rows()
        if start is not None:
            rows = rows[rows["ts"] >= _to_ms(start, "start")]
        if end is not None:
            rows = rows[rows["ts"] < _to_ms(end, "end")]
        return _to_bars(rows, with_source), len(parts)

    def _read_partition(self, part: Partition) -> pd.DataFrame:
        """The rows of one partition file as an internal frame (``ts`` in epoch ms)."""
        where = f"{self.uri.rstrip('/')}/{part.key}"
        data = self._store.get(part.key)
        if data is None:
            raise LakeError(f"{where} vanished while reading; run the command again")
        return _decode(data, part, where)


# ------------------------------------------------------------------------------------ store <-> lake


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
    tf = _check_series(symbol, timeframe)
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
    tf = _check_series(symbol, timeframe)
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


def upsert_lake_bars(conn: Connection, symbol: str, timeframe: str, bars: pd.DataFrame) -> UpsertResult:
    """Upsert canonical ``bars`` with a ``source`` column, each bar keeping its own source.

    One :func:`storage.bars.upsert_bars` per source, all on the caller's connection and
    transaction; returns the summed counts. Bars without a source column are stored as ``lake``.

    Raises:
        ValueError: for an empty symbol, an unknown timeframe or a frame that is not canonical.
    """
    tf = _check_series(symbol, timeframe)
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
        query = query.where(BarRow.ts >= _to_ms(start, "start"))
    if end is not None:
        query = query.where(BarRow.ts < _to_ms(end, "end"))
    rows = _empty_rows()
    result = conn.execute(query).all()
    if result:
        columns = list(zip(*result, strict=True))
        rows = pd.DataFrame({"ts": np.asarray(columns[0], dtype=np.int64)})
        for i, c in enumerate(BAR_COLUMNS, start=1):
            rows[c] = np.asarray(columns[i], dtype=np.float64)
        rows["source"] = np.asarray(columns[-1], dtype=object)
    return _to_bars(rows, with_source=True)


# ------------------------------------------------------------------------------------------ helpers


def partition_label(ts: pd.Timestamp, timeframe: str) -> str:
    """The partition of a bar opening at ``ts`` (UTC): ``YYYY-MM-DD`` for 1m, ``YYYY-MM`` for 1h,
    ``YYYY`` for 1d.

    Raises:
        ValueError: for an unknown timeframe or an invalid timestamp.
    """
    unit = PARTITION_UNITS[Timeframe.parse(timeframe).value]
    return str(np.datetime64(_to_ms(ts), "ms").astype(f"datetime64[{unit}]"))


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
    return _stamp(lo), _stamp(hi)


def partition_key(symbol: str, timeframe: str, label: str) -> str:
    """The object key (relative to the lake root) of a partition file."""
    return f"{_series_prefix(symbol, timeframe)}date={label}/{FILE_NAME}"


def _series_prefix(symbol: str, timeframe: str | None) -> str:
    prefix = f"symbol={quote(symbol, safe='-_.')}/"
    return f"{prefix}timeframe={timeframe}/" if timeframe else prefix


def _partition(symbol: str, timeframe: str, label: str) -> Partition:
    start, end = partition_bounds(label, timeframe)
    return Partition(symbol, timeframe, label, partition_key(symbol, timeframe, label), start, end)


def _check_series(symbol: str, timeframe: str) -> str:
    if not isinstance(symbol, str) or not symbol or symbol != symbol.strip():
        raise ValueError(f"symbol {symbol!r} must be a non-empty string without surrounding spaces")
    return Timeframe.parse(timeframe).value


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // _NS_PER_MS)


def _stamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms * _NS_PER_MS, tz="UTC")


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame({"ts": np.array([], dtype=np.int64)})
    for c in BAR_COLUMNS:
        frame[c] = np.array([], dtype=np.float64)
    frame["source"] = np.array([], dtype=object)
    return frame


def _to_rows(bars: pd.DataFrame, source: str) -> pd.DataFrame:
    """Canonical bars (plus an optional ``source`` column) → internal rows with ``ts`` in epoch ms."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source {source!r} must name where the bars came from")
    frame = canonical_bars(bars)
    ns = pd.DatetimeIndex(frame.index).asi8
    if len(ns) and np.any(ns % _NS_PER_MS):
        raise ValueError("bar timestamps finer than a millisecond cannot go to the lake; round them to ms")
    rows = pd.DataFrame({"ts": ns // _NS_PER_MS})
    for c in BAR_COLUMNS:
        rows[c] = frame[c].to_numpy(dtype=np.float64)
    rows["source"] = _aligned_sources(bars, frame.index, source)
    return rows


def _aligned_sources(bars: pd.DataFrame, index: pd.Index, default: str) -> np.ndarray:
    """The ``source`` column of ``bars`` in the order of the canonical ``index``; blanks → ``default``."""
    if "source" not in bars.columns:
        return np.full(len(index), default, dtype=object)
    keyed = bars.set_index("ts") if "ts" in bars.columns else bars
    stamps = pd.DatetimeIndex(keyed.index)
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    series = pd.Series(keyed["source"].to_numpy(dtype=object), index=stamps.as_unit("ns"))
    if not series.index.equals(index):
        series = series.reindex(index)
    return np.array([str(v) if isinstance(v, str) and v else default for v in series], dtype=object)


def _split(rows: pd.DataFrame, timeframe: str) -> list[tuple[str, pd.DataFrame]]:
    """Sorted rows → ``(partition label, rows)`` per partition, in time order."""
    unit = PARTITION_UNITS[timeframe]
    periods = rows["ts"].to_numpy().astype("datetime64[ms]").astype(f"datetime64[{unit}]")
    cuts = np.flatnonzero(periods[1:] != periods[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(rows)]])
    return [(str(periods[a]), rows.iloc[a:b]) for a, b in zip(starts, ends, strict=True)]


def _encode(rows: pd.DataFrame, part: Partition) -> bytes:
    """One partition as Parquet bytes; the same rows always give the same bytes."""
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


def _decode(data: bytes, part: Partition, where: str) -> pd.DataFrame:
    """Parquet bytes of one partition → internal rows; checks columns, nulls and partition bounds."""
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
    lo, hi = _ms(part.start), _ms(part.end)
    outside = (out["ts"] < lo) | (out["ts"] >= hi)
    if outside.any():
        bad = _stamp(int(out.loc[outside, "ts"].iloc[0]))
        raise LakeError(
            f"{where} holds a bar at {bad.isoformat()}, outside its partition {part.label}; "
            "delete the file and export again"
        )
    return out.sort_values("ts", kind="stable", ignore_index=True)


def _to_bars(rows: pd.DataFrame, with_source: bool) -> pd.DataFrame:
    """Internal rows → a canonical bar frame (plus ``source``); raises LakeError on repeated bars."""
    index = pd.DatetimeIndex(
        (rows["ts"].to_numpy(dtype=np.int64) * _NS_PER_MS).view("datetime64[ns]"), name="ts"
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


def _parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``[fn(x) for x in items]`` on a few threads (object stores are I/O bound), in order."""
    todo = list(items)
    if len(todo) <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(todo))) as pool:
        return list(pool.map(fn, todo))
