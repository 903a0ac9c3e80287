"""Data services: what the data side's Prefect tasks call, usable from a notebook without Prefect.

Each service takes an engine (:func:`storage.open_store`) and the settings, plans its work as
plain data (targets) and does one target at a time:

* :mod:`ingestion.ingest`: fetch a series (file, simulator or the online providers), screen it
  with the ``bars`` suite and store it; the run is recorded in ``ingest_runs``.
* :mod:`ingestion.backfill`: page through history in chunks, resumable; derive hours and days
  from minutes; list what the store lacks.
* :mod:`ingestion.lake`: export stored series to the Parquet lake and import them back, screened.
* :mod:`ingestion.fundamentals`: SEC EDGAR filings and company facts of registered companies.
* :mod:`ingestion.features`: feature sets built from stored bars, validated, stored.

Screening and quarantine themselves live in :mod:`expectations.screening`; the provider manager
comes from :func:`providers.shared.shared_manager`.

The names below are imported on first use (:pep:`562`), so a command that needs one service does
not pay for the others (the feature kernels and numba, the lake, the filings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.lazy import lazy_attributes

if TYPE_CHECKING:
    from ingestion.backfill import (
        BackfillIncomplete,
        BackfillOutcome,
        BackfillPlan,
        BackfillSummary,
        BackfillTarget,
        MissingRange,
        backfill_summary,
        backfill_target,
        backfill_targets,
        list_missing,
    )
    from ingestion.features import (
        FeaturesOutcome,
        FeaturesSummary,
        FeaturesTarget,
        FeatureValidationFailed,
        feature_targets,
        features_root,
        featurise_series,
    )
    from ingestion.fundamentals import CompanyOutcome, CompanyTarget, company_targets, store_company
    from ingestion.ingest import (
        IngestFailed,
        IngestOutcome,
        IngestSummary,
        IngestTarget,
        ingest_summary,
        ingest_target,
        ingest_targets,
    )
    from ingestion.lake import (
        LakeExportOutcome,
        LakeImportOutcome,
        LakeImportPlan,
        LakeTarget,
        export_series_to_lake,
        import_series_from_lake,
        lake_export_targets,
        lake_for,
        lake_import_targets,
    )

_SOURCES: dict[str, str] = {
    "BackfillIncomplete": "ingestion.backfill",
    "BackfillOutcome": "ingestion.backfill",
    "BackfillPlan": "ingestion.backfill",
    "BackfillSummary": "ingestion.backfill",
    "BackfillTarget": "ingestion.backfill",
    "MissingRange": "ingestion.backfill",
    "backfill_summary": "ingestion.backfill",
    "backfill_target": "ingestion.backfill",
    "backfill_targets": "ingestion.backfill",
    "list_missing": "ingestion.backfill",
    "FeaturesOutcome": "ingestion.features",
    "FeaturesSummary": "ingestion.features",
    "FeaturesTarget": "ingestion.features",
    "FeatureValidationFailed": "ingestion.features",
    "feature_targets": "ingestion.features",
    "features_root": "ingestion.features",
    "featurise_series": "ingestion.features",
    "CompanyOutcome": "ingestion.fundamentals",
    "CompanyTarget": "ingestion.fundamentals",
    "company_targets": "ingestion.fundamentals",
    "store_company": "ingestion.fundamentals",
    "IngestFailed": "ingestion.ingest",
    "IngestOutcome": "ingestion.ingest",
    "IngestSummary": "ingestion.ingest",
    "IngestTarget": "ingestion.ingest",
    "ingest_summary": "ingestion.ingest",
    "ingest_target": "ingestion.ingest",
    "ingest_targets": "ingestion.ingest",
    "LakeExportOutcome": "ingestion.lake",
    "LakeImportOutcome": "ingestion.lake",
    "LakeImportPlan": "ingestion.lake",
    "LakeTarget": "ingestion.lake",
    "export_series_to_lake": "ingestion.lake",
    "import_series_from_lake": "ingestion.lake",
    "lake_export_targets": "ingestion.lake",
    "lake_for": "ingestion.lake",
    "lake_import_targets": "ingestion.lake",
}

__all__ = [
    "BackfillIncomplete",
    "BackfillOutcome",
    "BackfillPlan",
    "BackfillSummary",
    "BackfillTarget",
    "CompanyOutcome",
    "CompanyTarget",
    "FeatureValidationFailed",
    "FeaturesOutcome",
    "FeaturesSummary",
    "FeaturesTarget",
    "IngestFailed",
    "IngestOutcome",
    "IngestSummary",
    "IngestTarget",
    "LakeExportOutcome",
    "LakeImportOutcome",
    "LakeImportPlan",
    "LakeTarget",
    "MissingRange",
    "backfill_summary",
    "backfill_target",
    "backfill_targets",
    "company_targets",
    "export_series_to_lake",
    "feature_targets",
    "features_root",
    "featurise_series",
    "import_series_from_lake",
    "ingest_summary",
    "ingest_target",
    "ingest_targets",
    "lake_export_targets",
    "lake_for",
    "lake_import_targets",
    "list_missing",
    "store_company",
]


__getattr__ = lazy_attributes(__name__, _SOURCES)
