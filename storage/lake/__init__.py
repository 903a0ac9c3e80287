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
DuckDB and Spark read the lake as a partitioned dataset). The feature store
(:mod:`storage.feature_store`) keeps its builds beside the bars, under ``<root>/features/``,
through the same stores. Each file holds the columns ``ts``
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

Modules: :mod:`~storage.lake.stores` (local folder, S3), :mod:`~storage.lake.layout` (partitions
and the Parquet codec, pure), :mod:`~storage.lake.dataset` (:class:`Lake`: listing, writing,
reading), :mod:`~storage.lake.sql` (export from and import into the SQL store).
"""

from storage.lake.dataset import ExportResult, Lake, open_lake, read_lake_series
from storage.lake.errors import LakeError, LakeUnreachable
from storage.lake.layout import (
    DEFAULT_SOURCE,
    FILE_NAME,
    PARTITION_UNITS,
    Moment,
    Partition,
    partition_bounds,
    partition_key,
    partition_label,
)
from storage.lake.sql import ImportResult, export_series, import_series, upsert_lake_bars

__all__ = [
    "DEFAULT_SOURCE",
    "FILE_NAME",
    "PARTITION_UNITS",
    "ExportResult",
    "ImportResult",
    "Lake",
    "LakeError",
    "LakeUnreachable",
    "Moment",
    "Partition",
    "export_series",
    "import_series",
    "open_lake",
    "partition_bounds",
    "partition_key",
    "partition_label",
    "read_lake_series",
    "upsert_lake_bars",
]
