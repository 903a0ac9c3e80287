"""A point-in-time feature store: immutable Parquet files plus the ``feature_builds`` table.

Each build of a feature set version over one series is one Parquet file under the store root,
a local folder or an S3 prefix (:class:`FeatureRoot`; the features flow uses
``<FKS_LAKE_URI>/features``, so every worker with the same lake settings sees the same files)::

    {set_name}/{set_version}/{symbol}/{timeframe}/build-{id}.parquet

and one row of ``feature_builds`` saying where the file is (its full URI, ``file:///...`` or
``s3://BUCKET/KEY``), which input bars produced it (first and last bar, count and SHA-256
checksum) and when (``built_at``). Files are never overwritten, so every older build stays
readable, and :func:`read_features` can answer "what did the features look like at ``as_of``":
the newest build made at or before ``as_of``, cut to rows with ``ts <= as_of``, read from the
recorded URI through the store it names (:mod:`storage.lake.stores`), whatever the reader's
``FKS_DATA_DIR``. Rows recorded before builds had full URIs hold a path relative to the old
per-machine root (``<FKS_DATA_DIR>/features``, :attr:`FeatureRoot.legacy_dir`) and still read
from there.

Writes are atomic: locally the file is written under a hidden temporary name in its folder
(``.build-*.tmp``), flushed to disk, then renamed (and the folder synced); on S3 the complete
object is one PUT. So a crash never leaves a half-written file under a ``build-*.parquet`` name;
the store only ever reads the URIs recorded in the table. The row is inserted on the caller's
connection and transaction::

    root = FeatureRoot("s3://research/fks/features", endpoint_url="http://127.0.0.1:9000")
    with engine.begin() as conn:
        build = find_build(conn, set_name="core", set_version="1", symbol="SPX", timeframe="1d",
                           bars_checksum=bars_checksum(bars))
        if build is None:
            build = save_features(conn, root, set_name="core", set_version="1", symbol="SPX",
                                  timeframe="1d", features=compute(bars), bars=bars)
    with engine.connect() as conn:
        features = read_features(conn, root, set_name="core", set_version="1", symbol="SPX",
                                 timeframe="1d", as_of=pd.Timestamp("2025-01-01", tz="UTC"))
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Connection, delete, insert, select, update

from market.bars import BAR_COLUMNS, Timeframe, as_utc_index, canonical_bars
from storage._time import NS_PER_MS as _NS_PER_MS
from storage._time import from_ms as _from_ms
from storage._time import to_ms as _to_ms
from storage._time import utc as _utc
from storage.lake.errors import LakeError
from storage.lake.stores import ObjectStore, has_scheme, open_object, open_store
from storage.schema import FeatureBuildRow

_CHECKSUM_TAG = b"fks-bars-v1\0"
_NAME_LIMITS = {"set_name": 64, "set_version": 64, "symbol": 32}
_PARQUET_METADATA_KEY = b"fks.feature_build"


@dataclass(frozen=True)
class FeatureBuild:
    """One row of ``feature_builds``: one immutable build of a feature set version over a series.

    ``bars_first`` and ``bars_last`` are the open times (UTC) of the first and last input bar,
    ``bar_count`` the number of input bars and ``bars_checksum`` their hex SHA-256
    (:func:`bars_checksum`). ``rows`` is the number of feature rows, ``columns`` the feature
    column names in file order, ``path`` the full URI of the Parquet file (``file:///...`` or
    ``s3://BUCKET/KEY``; a path relative to :attr:`FeatureRoot.legacy_dir` for builds recorded
    before full URIs) and ``built_at`` when the build was made (UTC).
    """

    id: int
    set_name: str
    set_version: str
    symbol: str
    timeframe: str
    bars_first: pd.Timestamp
    bars_last: pd.Timestamp
    bar_count: int
    bars_checksum: str
    rows: int
    columns: tuple[str, ...]
    path: str
    built_at: pd.Timestamp


# --- input checks --------------------------------------------------------------------------------


def _check_name(what: str, value: str) -> str:
    """A set name, version or symbol that is safe as one path component and fits its column."""
    limit = _NAME_LIMITS[what]
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{what} {value!r} must be a non-empty string without surrounding spaces")
    if len(value) > limit:
        raise ValueError(f"{what} {value!r} is longer than {limit} characters; use a shorter name")
    if value.startswith(".") or any(c in value for c in "/\\\0") or any(c.isspace() for c in value):
        raise ValueError(
            f"{what} {value!r} must be one word usable as a folder name: no slashes, spaces or leading dot"
        )
    return value


def _check_series(set_name: str, set_version: str, symbol: str, timeframe: str) -> tuple[str, str, str, str]:
    return (
        _check_name("set_name", set_name),
        _check_name("set_version", set_version),
        _check_name("symbol", symbol),
        Timeframe.parse(timeframe).value,
    )


def _canonical(bars: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(bars, pd.DataFrame):
        kind = type(bars).__name__
        raise TypeError(f"bars must be a pandas DataFrame in the canonical bar schema, not {kind}")
    frame = canonical_bars(bars)
    if len(frame) and pd.DatetimeIndex(frame.index).hasnans:
        raise ValueError("bar frame has NaT timestamps; drop them before building features")
    return frame


def _checked_features(features: pd.DataFrame) -> pd.DataFrame:
    """``features`` with a UTC ``ts`` index; raises on anything the store cannot keep faithfully."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features must be a pandas DataFrame indexed by ts, not {type(features).__name__}")
    if not isinstance(features.index, pd.DatetimeIndex):
        raise ValueError(
            "features must be indexed by bar open time: a DatetimeIndex named ts, "
            f"not {type(features.index).__name__}; use features.set_index('ts')"
        )
    if features.columns.nlevels != 1 or len(features.columns) == 0:
        raise ValueError("features must have at least one column and a flat (single-level) column index")
    names = list(features.columns)
    bad = [c for c in names if not isinstance(c, str) or not c or c == "ts"]
    if bad:
        raise ValueError(f"feature column names must be non-empty strings other than 'ts', got {bad!r}")
    if len(set(names)) != len(names):
        dups = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"feature columns repeat: {dups}; each feature needs its own name")
    index = features.index
    if index.hasnans:
        raise ValueError("features have NaT timestamps in their index; drop those rows first")
    index = as_utc_index(index)
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ValueError(f"features have duplicate timestamp {dup.isoformat()}; one row per bar")
    if not index.is_monotonic_increasing:
        raise ValueError("features must be sorted by ts; call features.sort_index() first")
    out = features.copy(deep=False)
    out.index = index.rename("ts")
    return out


# --- checksum ------------------------------------------------------------------------------------


def bars_checksum(bars: pd.DataFrame) -> str:
    """Hex SHA-256 of a bar frame: its timestamps and OHLCV values, in order.

    The frame is first made canonical (:func:`market.bars.canonical_bars`: UTC ``ts`` index,
    float64 ``open, high, low, close, volume``, sorted), then the hash covers the timestamps as
    int64 nanoseconds since the epoch followed by each OHLCV column as float64, all little-endian.
    Any change in any value or timestamp, an added or a removed bar changes it; other columns
    and the frame's column order do not.

    Raises:
        TypeError: when ``bars`` is not a DataFrame.
        ValueError: when the frame is not a bar frame (missing column, duplicate or NaT timestamp).
    """
    frame = _canonical(bars)
    digest = hashlib.sha256(_CHECKSUM_TAG)
    ns = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
    digest.update(np.ascontiguousarray(ns, dtype="<i8").tobytes())
    for column in BAR_COLUMNS:
        digest.update(np.ascontiguousarray(frame[column].to_numpy(), dtype="<f8").tobytes())
    return digest.hexdigest()


# --- rows ----------------------------------------------------------------------------------------


def _build(row: Any) -> FeatureBuild:
    return FeatureBuild(
        id=int(row.id),
        set_name=row.set_name,
        set_version=row.set_version,
        symbol=row.symbol,
        timeframe=row.timeframe,
        bars_first=_from_ms(row.bars_first),
        bars_last=_from_ms(row.bars_last),
        bar_count=int(row.bar_count),
        bars_checksum=row.bars_checksum,
        rows=int(row.rows),
        columns=tuple(str(c) for c in row.columns),
        path=row.path,
        built_at=_from_ms(row.built_at),
    )


def find_build(
    conn: Connection,
    *,
    set_name: str,
    set_version: str,
    symbol: str,
    timeframe: str,
    bars_checksum: str,
) -> FeatureBuild | None:
    """The build of ``set_name``/``set_version`` over ``symbol``/``timeframe`` made from input bars
    with checksum ``bars_checksum`` (see :func:`bars_checksum`), or None: the feature cache lookup.

    Raises:
        ValueError: for an invalid name, symbol or timeframe.
    """
    set_name, set_version, symbol, tf = _check_series(set_name, set_version, symbol, timeframe)
    query = select(FeatureBuildRow.__table__).where(
        FeatureBuildRow.set_name == set_name,
        FeatureBuildRow.set_version == set_version,
        FeatureBuildRow.symbol == symbol,
        FeatureBuildRow.timeframe == tf,
        FeatureBuildRow.bars_checksum == bars_checksum,
    )
    row = conn.execute(query).one_or_none()
    return None if row is None else _build(row)


def list_builds(
    conn: Connection, *, set_name: str | None = None, symbol: str | None = None
) -> list[FeatureBuild]:
    """Recorded feature builds, optionally only of ``set_name`` and/or ``symbol``, ordered by set
    name, version, symbol, timeframe, then oldest build first (``built_at``, then id)."""
    query = select(FeatureBuildRow.__table__).order_by(
        FeatureBuildRow.set_name,
        FeatureBuildRow.set_version,
        FeatureBuildRow.symbol,
        FeatureBuildRow.timeframe,
        FeatureBuildRow.built_at,
        FeatureBuildRow.id,
    )
    if set_name is not None:
        query = query.where(FeatureBuildRow.set_name == set_name)
    if symbol is not None:
        query = query.where(FeatureBuildRow.symbol == symbol)
    return [_build(row) for row in conn.execute(query).all()]


# --- files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRoot:
    """Where feature builds are written, and how recorded builds are reached.

    ``uri`` is the folder or S3 prefix new builds go under: ``file:///folder``, a bare local path
    or ``s3://BUCKET/PREFIX`` (:func:`ingestion.features.features_root` gives
    ``<FKS_LAKE_URI>/features``). ``endpoint_url`` is the S3 endpoint ``s3://`` URIs are reached
    through (MinIO, moto; None: boto3's default). ``legacy_dir`` is the folder that the relative
    paths of builds recorded before builds had full URIs resolve against (None: ``uri``).
    """

    uri: str
    endpoint_url: str | None = None
    legacy_dir: Path | None = None


#: A :class:`FeatureRoot`, or just the folder / URI new builds go under.
FeatureRootLike = FeatureRoot | str | os.PathLike[str]


def _as_root(root: FeatureRootLike) -> FeatureRoot:
    return root if isinstance(root, FeatureRoot) else FeatureRoot(os.fspath(root))


def _relative_path(set_name: str, set_version: str, symbol: str, tf: str, build_id: int) -> str:
    return f"{set_name}/{set_version}/{symbol}/{tf}/build-{build_id}.parquet"


def _describe(build: FeatureBuild) -> str:
    return f"feature build {build.id} ({build.set_name} {build.set_version} {build.symbol} {build.timeframe})"


def _unreachable(build: FeatureBuild, uri: str, exc: LakeError) -> LakeError:
    """``exc`` (same class, so :class:`LakeUnreachable` stays retryable) said of ``build``."""
    return type(exc)(
        f"{_describe(build)} is stored at {uri}, which this worker cannot reach: {exc}. Give this "
        "worker the lake settings of the worker that built it: FKS_LAKE_URI, FKS_S3_ENDPOINT_URL and "
        "the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    )


def _locate(root: FeatureRoot, build: FeatureBuild) -> tuple[ObjectStore, str, str]:
    """The store holding ``build``'s file, the file's key there and its full URI: the recorded URI,
    or for an old row's relative path, that path under ``root.legacy_dir`` (else ``root.uri``).

    Raises:
        LakeError: when the recorded URI names a store this worker cannot open (another scheme,
            an invalid bucket).
    """
    path = build.path
    try:
        if has_scheme(path):
            store, key = open_object(path, root.endpoint_url)
            return store, key, path
        base = root.uri if root.legacy_dir is None else os.fspath(root.legacy_dir)
        store, where = open_store(base, root.endpoint_url)
    except LakeError as exc:
        raise _unreachable(build, path, exc) from None
    return store, path, f"{where.rstrip('/')}/{path}"


def build_uri(root: FeatureRootLike, build: FeatureBuild) -> str:
    """The full URI of ``build``'s Parquet file (``file:///...`` or ``s3://...``).

    Raises:
        LakeError: as :func:`read_features` does for a store this worker cannot open.
    """
    return _locate(_as_root(root), build)[2]


def has_build_file(root: FeatureRootLike, build: FeatureBuild) -> bool:
    """True when ``build``'s Parquet file exists where its row says (see :func:`build_uri`).

    Raises:
        LakeError: when the file's store cannot be opened or reached (the message says which
            settings to fix).
    """
    store, key, uri = _locate(_as_root(root), build)
    try:
        return store.exists(key)
    except LakeError as exc:
        raise _unreachable(build, uri, exc) from None


def _encode(features: pd.DataFrame, provenance: dict[str, Any]) -> bytes:
    """``features`` as Parquet bytes, with ``provenance`` in the file's metadata."""
    table = pa.Table.from_pandas(features, preserve_index=True)
    metadata = dict(table.schema.metadata or {})
    metadata[_PARQUET_METADATA_KEY] = json.dumps(provenance, sort_keys=True).encode()
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return sink.getvalue()


def _restore_file(root: FeatureRoot, build: FeatureBuild, features: pd.DataFrame) -> None:
    """Write the missing file of the recorded ``build`` where its row says (:func:`build_uri`)
    from ``features`` (computed again from the same bars), with the provenance the build was
    first written with."""
    columns = tuple(str(c) for c in features.columns)
    if len(features) != build.rows or columns != build.columns:
        raise ValueError(
            f"{_describe(build)} has {build.rows} rows and columns {list(build.columns)}, but the "
            f"features given to write its missing file have {len(features)} rows and columns "
            f"{list(columns)}; a changed feature set needs a new set version"
        )
    provenance = {
        "set_name": build.set_name,
        "set_version": build.set_version,
        "symbol": build.symbol,
        "timeframe": build.timeframe,
        "bars_first": _to_ms(build.bars_first, "bars_first"),
        "bars_last": _to_ms(build.bars_last, "bars_last"),
        "bar_count": build.bar_count,
        "bars_checksum": build.bars_checksum,
        "rows": build.rows,
        "built_at": _to_ms(build.built_at, "built_at"),
    }
    data = _encode(features, provenance)
    store, key, uri = _locate(root, build)
    try:
        store.put(key, data)
    except LakeError as exc:
        raise _unreachable(build, uri, exc) from None


def _read_file(root: FeatureRoot, build: FeatureBuild) -> pd.DataFrame:
    """The frame in ``build``'s file, read through the store its URI names."""
    store, key, uri = _locate(root, build)
    try:
        data = store.get(key)
    except LakeError as exc:
        raise _unreachable(build, uri, exc) from None
    if data is None:
        raise FileNotFoundError(
            f"{_describe(build)} points to {uri}, which does not exist; run `fks features` to write it "
            "again, or check this worker's lake settings (FKS_LAKE_URI, FKS_S3_ENDPOINT_URL) against "
            "the worker that built it"
        )
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def save_features(
    conn: Connection,
    root: FeatureRootLike,
    *,
    set_name: str,
    set_version: str,
    symbol: str,
    timeframe: str,
    features: pd.DataFrame,
    bars: pd.DataFrame,
    built_at: pd.Timestamp | None = None,
) -> FeatureBuild:
    """Store ``features`` computed from ``bars`` as a new immutable build, or return the existing one.

    ``features`` is indexed by bar open time (a ``DatetimeIndex``, naive taken as UTC; sorted,
    unique), with uniquely named string columns of any Parquet-storable dtype (NaN allowed, e.g.
    during warm-up). ``bars`` are the input bars (a canonical bar frame, at least one bar); their
    checksum (:func:`bars_checksum`) identifies the build. ``root`` is a :class:`FeatureRoot` or
    just the folder / URI (``file://``, ``s3://``) to write under. If a build of this set version
    and series with the same checksum exists, it is returned and nothing is written (idempotent),
    unless its file is missing where its row says (deleted, or lost with a local disk): the file
    is then written there again from ``features``, with the build's own provenance, and no row
    changes (an old row's relative path is taken under ``root.legacy_dir``).
    Otherwise the frame is written to ``{root.uri}/{set_name}/{set_version}/{symbol}/{timeframe}/
    build-{id}.parquet`` (locally: temporary name, flushed, then renamed; on S3: one PUT) and the
    row, with the file's full URI, is inserted on the caller's connection, stamped ``built_at``
    (default: now, UTC; stored in milliseconds). The caller commits or rolls back; if the write
    fails, the row is removed. A file left behind by a transaction rolled back later is never
    read (no row points to it) and may be replaced by a later build that gets the same id.

    Raises:
        TypeError: when ``features`` or ``bars`` is not a DataFrame.
        ValueError: for an invalid name, symbol or timeframe (names become folder names: no
            slashes, spaces or leading dot), empty bars, or features that are not indexed by
            sorted unique timestamps or whose columns are not unique non-empty strings; or, when a
            recorded build's missing file is written again, features whose rows or columns are
            not the build's.
        storage.lake.LakeError: (a ValueError) when ``root`` is not a URI this code can open, or
            the store refuses the write (missing bucket, credentials; :class:`LakeUnreachable`
            when its endpoint cannot be reached).
        OSError: when the file cannot be written under a local ``root``.
        sqlalchemy.exc.DBAPIError: from the database, e.g. ``IntegrityError`` when another
            process stored the same build at the same moment (retry: it is then a cache hit).
    """
    set_name, set_version, symbol, tf = _check_series(set_name, set_version, symbol, timeframe)
    frame = _checked_features(features)
    input_bars = _canonical(bars)
    if len(input_bars) == 0:
        raise ValueError(f"bars of {symbol} {tf} are empty; features need at least one input bar")
    checksum = bars_checksum(input_bars)
    existing = find_build(
        conn, set_name=set_name, set_version=set_version, symbol=symbol, timeframe=tf, bars_checksum=checksum
    )
    store_root = _as_root(root)
    if existing is not None:
        if not has_build_file(store_root, existing):
            _restore_file(store_root, existing, frame)
        return existing

    bar_ns = pd.DatetimeIndex(input_bars.index).as_unit("ns").asi8
    stamp = time.time_ns() // _NS_PER_MS if built_at is None else _to_ms(built_at, "built_at")
    values: dict[str, Any] = {
        "set_name": set_name,
        "set_version": set_version,
        "symbol": symbol,
        "timeframe": tf,
        "bars_first": int(bar_ns[0] // _NS_PER_MS),
        "bars_last": int(bar_ns[-1] // _NS_PER_MS),
        "bar_count": len(input_bars),
        "bars_checksum": checksum,
        "rows": len(frame),
        "columns": [str(c) for c in frame.columns],
        "built_at": stamp,
    }
    data = _encode(frame, {k: v for k, v in values.items() if k != "columns"})
    store, where = open_store(store_root.uri, store_root.endpoint_url)
    build_id: int | None = None
    try:
        result = conn.execute(insert(FeatureBuildRow).values(**values, path=""))
        key = result.inserted_primary_key
        if key is None:  # pragma: no cover - every supported dialect reports it
            raise RuntimeError("the database did not report the new feature build's id")
        build_id = int(key[0])
        relative = _relative_path(set_name, set_version, symbol, tf, build_id)
        uri = f"{where.rstrip('/')}/{relative}"
        conn.execute(update(FeatureBuildRow).where(FeatureBuildRow.id == build_id).values(path=uri))
        # The id is new in this transaction, so an object already under this name can only be an
        # orphan of a rolled-back transaction: replacing it is safe.
        store.put(relative, data)
    except BaseException:
        if build_id is not None:
            with contextlib.suppress(Exception):  # best effort; the caller's rollback removes it anyway
                conn.execute(delete(FeatureBuildRow).where(FeatureBuildRow.id == build_id))
        raise
    return FeatureBuild(
        id=build_id,
        set_name=set_name,
        set_version=set_version,
        symbol=symbol,
        timeframe=tf,
        bars_first=_from_ms(values["bars_first"]),
        bars_last=_from_ms(values["bars_last"]),
        bar_count=values["bar_count"],
        bars_checksum=checksum,
        rows=values["rows"],
        columns=tuple(values["columns"]),
        path=uri,
        built_at=_from_ms(stamp),
    )


def read_features(
    conn: Connection,
    root: FeatureRootLike,
    *,
    set_name: str,
    set_version: str,
    symbol: str,
    timeframe: str,
    as_of: pd.Timestamp | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Features of ``set_name``/``set_version`` over ``symbol``/``timeframe`` as known at ``as_of``.

    Point in time: the newest build with ``built_at <= as_of`` (ties: the highest id), and only
    its rows with ``ts <= as_of``; ``as_of=None`` means the newest build and all its rows.
    ``start`` (inclusive) and ``end`` (exclusive) further filter on ``ts``. Timestamps may be
    naive (taken as UTC). Returns the frame as saved: UTC ``ts`` index, the build's columns in
    their order, their dtypes (possibly with zero rows).

    The build's file is read from the full URI its row records, through the store that URI names
    (a local folder, or S3 through ``root.endpoint_url``), so any worker with the same lake
    settings reads what another worker built; an old row's relative path is taken under
    ``root.legacy_dir`` (else ``root.uri``).

    Raises:
        LookupError: when no build was made at or before ``as_of``; build the features first
            (``fks features``).
        FileNotFoundError: when the build's file does not exist at its URI (the message names it).
        storage.lake.LakeError: (a ValueError) when the URI names a store this worker cannot open
            or reach (another scheme, missing bucket or credentials; :class:`LakeUnreachable` when
            the endpoint is down): the message names the settings to fix.
        ValueError: for an invalid name, symbol, timeframe or timestamp.
    """
    set_name, set_version, symbol, tf = _check_series(set_name, set_version, symbol, timeframe)
    cutoff = None if as_of is None else _utc(as_of, "as_of")
    lo = None if start is None else _utc(start, "start")
    hi = None if end is None else _utc(end, "end")
    query = (
        select(FeatureBuildRow.__table__)
        .where(
            FeatureBuildRow.set_name == set_name,
            FeatureBuildRow.set_version == set_version,
            FeatureBuildRow.symbol == symbol,
            FeatureBuildRow.timeframe == tf,
        )
        .order_by(FeatureBuildRow.built_at.desc(), FeatureBuildRow.id.desc())
        .limit(1)
    )
    if cutoff is not None:
        query = query.where(FeatureBuildRow.built_at <= int(cutoff.as_unit("ns").value // _NS_PER_MS))
    row = conn.execute(query).one_or_none()
    if row is None:
        when = "" if cutoff is None else f" at or before as_of={cutoff.isoformat()}"
        raise LookupError(
            f"no feature build of set {set_name!r} version {set_version!r} for {symbol} {tf}{when}; "
            f"run `fks features` to build them"
        )
    frame = _read_file(_as_root(root), _build(row))
    index = pd.DatetimeIndex(frame.index)
    keep = np.ones(len(frame), dtype=bool)
    if cutoff is not None:
        keep &= index <= cutoff
    if lo is not None:
        keep &= index >= lo
    if hi is not None:
        keep &= index < hi
    return frame if keep.all() else frame.iloc[keep]
