"""``fks pipeline``: the main job, every stage on the shipped sample data (and the allocator on the
seeded synthetic market's eight daily equities), ending with a summary.

Exit codes: 0 ok, 3 some rows were quarantined, 2 bad input, 1 a stage failed.
"""

from __future__ import annotations

from flows.cli._ui import exit_if_quarantined, progress_from_runs, run_guarded
from flows.cli.render import print_pipeline, report_ingest_failure


def pipeline_command() -> None:
    """The main job: every stage on the shipped sample data, ending with a summary."""
    from config.flows import PipelineConfig
    from config.settings import get_settings
    from flows.pipeline import pipeline as pipeline_flow
    from ingestion.ingest import IngestFailed

    def run() -> None:
        config = PipelineConfig()
        settings = get_settings()
        with progress_from_runs(settings, config.ingest.batch_id, "ingesting"):
            summary = pipeline_flow(config, settings)
        print_pipeline(summary, settings)
        exit_if_quarantined(summary.ingest.outcomes)

    run_guarded(run, (IngestFailed, report_ingest_failure))
