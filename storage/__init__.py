"""FKS storage: the SQL database of bars, assets and ingest runs.

Open a store with :func:`open_store` (engine + migrations), then pass a connection to the
repository functions; the caller owns the transaction::

    engine = open_store("sqlite:///data/fks.db")
    with engine.begin() as conn:
        result = upsert_bars(conn, "SPX", "1d", bars, source="csv")
"""

from storage.assets import get_asset, list_assets, register_asset, upsert_assets
from storage.bars import UpsertResult, bar_gaps, bar_summary, count_bars, read_bars, upsert_bars, watermark
from storage.db import make_engine, migrate, open_store
from storage.runs import IngestRun, finish_ingest_run, list_ingest_runs, start_ingest_run

__all__ = [
    "IngestRun",
    "UpsertResult",
    "bar_gaps",
    "bar_summary",
    "count_bars",
    "finish_ingest_run",
    "get_asset",
    "list_assets",
    "list_ingest_runs",
    "make_engine",
    "migrate",
    "open_store",
    "read_bars",
    "register_asset",
    "start_ingest_run",
    "upsert_assets",
    "upsert_bars",
    "watermark",
]
