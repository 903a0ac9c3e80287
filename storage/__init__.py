"""FKS storage: the SQL database of bars, assets, corporate actions, ingest runs, validation results,
quarantine, audit and model promotions, and the point-in-time feature store (Parquet files
recorded in ``feature_builds``).

Open a store with :func:`open_store` (engine + migrations), then pass a connection to the
repository functions; the caller owns the transaction::

    engine = open_store("sqlite:///data/fks.db")
    with engine.begin() as conn:
        result = upsert_bars(conn, "SPX", "1d", bars, source="csv")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.lazy import lazy_attributes

if TYPE_CHECKING:
    from storage.assets import get_asset, list_assets, register_asset, upsert_assets
    from storage.audit import AuditEntry, audit, list_audit
    from storage.bars import (
        UpsertResult,
        bar_gaps,
        bar_summary,
        count_bars,
        delete_bars,
        read_bars,
        upsert_bars,
        watermark,
    )
    from storage.corporate_actions import CorporateAction, list_corporate_actions, upsert_corporate_actions
    from storage.db import make_engine, migrate, open_store
    from storage.feature_store import (
        FeatureBuild,
        FeatureRoot,
        bars_checksum,
        build_uri,
        find_build,
        has_build_file,
        list_builds,
        read_features,
        save_features,
    )
    from storage.promotions import PromotionRecord, list_promotions, record_promotion
    from storage.quarantine import (
        QuarantinedRow,
        QuarantineEntry,
        decide_quarantine,
        get_quarantine,
        list_quarantine,
        quarantine_counts,
        quarantine_rows,
    )
    from storage.runs import IngestRun, finish_ingest_run, list_ingest_runs, start_ingest_run
    from storage.validation_results import (
        ValidationRecord,
        WarnedBar,
        list_validations,
        list_warnings,
        record_validation,
    )

_EXPORTS: dict[str, str] = {
    "AuditEntry": "storage.audit",
    "CorporateAction": "storage.corporate_actions",
    "FeatureBuild": "storage.feature_store",
    "FeatureRoot": "storage.feature_store",
    "IngestRun": "storage.runs",
    "PromotionRecord": "storage.promotions",
    "QuarantineEntry": "storage.quarantine",
    "QuarantinedRow": "storage.quarantine",
    "UpsertResult": "storage.bars",
    "ValidationRecord": "storage.validation_results",
    "WarnedBar": "storage.validation_results",
    "audit": "storage.audit",
    "bar_gaps": "storage.bars",
    "bar_summary": "storage.bars",
    "bars_checksum": "storage.feature_store",
    "build_uri": "storage.feature_store",
    "count_bars": "storage.bars",
    "decide_quarantine": "storage.quarantine",
    "delete_bars": "storage.bars",
    "find_build": "storage.feature_store",
    "finish_ingest_run": "storage.runs",
    "get_asset": "storage.assets",
    "get_quarantine": "storage.quarantine",
    "has_build_file": "storage.feature_store",
    "list_assets": "storage.assets",
    "list_audit": "storage.audit",
    "list_builds": "storage.feature_store",
    "list_corporate_actions": "storage.corporate_actions",
    "list_ingest_runs": "storage.runs",
    "list_promotions": "storage.promotions",
    "list_quarantine": "storage.quarantine",
    "list_validations": "storage.validation_results",
    "list_warnings": "storage.validation_results",
    "make_engine": "storage.db",
    "migrate": "storage.db",
    "open_store": "storage.db",
    "quarantine_counts": "storage.quarantine",
    "quarantine_rows": "storage.quarantine",
    "read_bars": "storage.bars",
    "read_features": "storage.feature_store",
    "record_promotion": "storage.promotions",
    "record_validation": "storage.validation_results",
    "register_asset": "storage.assets",
    "save_features": "storage.feature_store",
    "start_ingest_run": "storage.runs",
    "upsert_assets": "storage.assets",
    "upsert_bars": "storage.bars",
    "upsert_corporate_actions": "storage.corporate_actions",
    "watermark": "storage.bars",
}
"""The module each public name comes from, imported on first use (:mod:`storage.lazy`): importing
one module of the package (e.g. the standard-library-only :mod:`storage.processes`, which every
command's start-up and the temporary server's watchdog use) does not import them all."""

__all__ = [
    "AuditEntry",
    "CorporateAction",
    "FeatureBuild",
    "FeatureRoot",
    "IngestRun",
    "PromotionRecord",
    "QuarantineEntry",
    "QuarantinedRow",
    "UpsertResult",
    "ValidationRecord",
    "WarnedBar",
    "audit",
    "bar_gaps",
    "bar_summary",
    "bars_checksum",
    "build_uri",
    "count_bars",
    "decide_quarantine",
    "delete_bars",
    "find_build",
    "finish_ingest_run",
    "get_asset",
    "get_quarantine",
    "has_build_file",
    "list_assets",
    "list_audit",
    "list_builds",
    "list_corporate_actions",
    "list_ingest_runs",
    "list_promotions",
    "list_quarantine",
    "list_validations",
    "list_warnings",
    "make_engine",
    "migrate",
    "open_store",
    "quarantine_counts",
    "quarantine_rows",
    "read_bars",
    "read_features",
    "record_promotion",
    "record_validation",
    "register_asset",
    "save_features",
    "start_ingest_run",
    "upsert_assets",
    "upsert_bars",
    "upsert_corporate_actions",
    "watermark",
]


__getattr__ = lazy_attributes(__name__, _EXPORTS)
