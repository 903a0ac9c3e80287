"""The lake flows: export stored bars to the Parquet lake (``FKS_LAKE_URI``) and import them back.

``python -m flows.lake`` exports every stored series; ``python -m flows.lake import`` imports the
lake; the fields of the flow's config narrow either down (``--symbols SPX --timeframe 1d``, see
``--help``).
"""

from __future__ import annotations

from prefect import flow, unmapped
from pydantic import BaseModel, Field

from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.lake import LakeExportOutcome, LakeImportOutcome, LakeRefusal, lake_for
from tasks.lake import export_lake_series, import_lake_series, plan_lake_export, plan_lake_import


class LakeExportSummary(BaseModel):
    """The ``lake-export`` flow's result: the lake's URI and one outcome per series."""

    lake_uri: str
    outcomes: list[LakeExportOutcome] = Field(default_factory=list)


class LakeImportSummary(BaseModel):
    """The ``lake-import`` flow's result: the lake's URI, one outcome per imported series, and the
    series refused (not imported: their symbol is not a registered asset)."""

    lake_uri: str
    batch_id: str = ""
    outcomes: list[LakeImportOutcome] = Field(default_factory=list)
    refused: list[LakeRefusal] = Field(default_factory=list)

    @property
    def quarantined(self) -> int:
        """Bars moved to quarantine across every series."""
        return sum(o.quarantined for o in self.outcomes)


@flow(name="lake-export", validate_parameters=False)
def lake_export(
    config: LakeExportConfig | None = None, settings: Settings | None = None
) -> LakeExportSummary:
    """Export stored bars to the lake, one task per series; re-running it rewrites nothing."""
    config = config or LakeExportConfig()
    settings = settings or get_settings()
    targets = plan_lake_export(config, settings)
    futures = export_lake_series.map(targets, settings=unmapped(settings))
    return LakeExportSummary(lake_uri=lake_for(settings).uri, outcomes=[f.result() for f in futures])


@flow(name="lake-import", validate_parameters=False)
def lake_import(
    config: LakeImportConfig | None = None, settings: Settings | None = None
) -> LakeImportSummary:
    """Screen the lake's bars with the ``bars`` suite and store them, one task (and transaction) per
    series: good bars upserted, failing bars quarantined; idempotent. Series of unregistered symbols
    are refused (listed in ``refused``) while the others import."""
    config = config or LakeImportConfig()
    settings = settings or get_settings()
    plan = plan_lake_import(config, settings)
    futures = import_lake_series.map(plan.targets, settings=unmapped(settings))
    return LakeImportSummary(
        lake_uri=lake_for(settings).uri,
        batch_id=plan.batch_id,
        outcomes=[f.result() for f in futures],
        refused=plan.refused,
    )


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["import"]:
        run_from_argv(lake_import, LakeImportConfig, sys.argv[2:], prog="python -m flows.lake import")
    else:
        args = sys.argv[2:] if sys.argv[1:2] == ["export"] else sys.argv[1:]
        run_from_argv(lake_export, LakeExportConfig, args, prog="python -m flows.lake [export]")
