"""``fks pipeline``: the main job, every stage on the shipped sample data (and the allocator on the
seeded synthetic market's eight daily equities), ending with a summary.

While it runs, one line shows the stage it is in (ingest and validation, features, forecaster
training with its fit, epoch and Optuna trial, backtest, gate, the allocator's stages) and the
time spent in it; piped, each stage is announced on its own line instead. The display only
watches: the results are those of the pipeline without it.

Exit codes: 0 ok, 3 some rows were quarantined, 2 bad input, 1 a stage failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from flows.cli._ui import err, exit_if_quarantined, run_guarded
from flows.cli.render import print_pipeline, report_ingest_failure

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from config.flows import PipelineConfig
    from config.settings import Settings


def pipeline_command(
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML/JSON of PipelineConfig fields laid over the defaults, e.g. "
            "'forecaster: {epochs: 5}' keeps every other default.",
        ),
    ] = None,
) -> None:
    """The main job: every stage on the shipped sample data, ending with a summary."""
    from config.settings import get_settings
    from flows.pipeline import pipeline as pipeline_flow
    from ingestion.ingest import IngestFailed

    def run() -> None:
        config = pipeline_config(config_file)
        settings = get_settings()
        with stage_display(settings, config):
            summary = pipeline_flow(config, settings)
        print_pipeline(summary, settings)
        exit_if_quarantined(summary.ingest.outcomes)

    run_guarded(run, (IngestFailed, report_ingest_failure))


def pipeline_config(config_file: Path | None) -> PipelineConfig:
    """The pipeline's config: the defaults, with the mappings of ``config_file`` (YAML or JSON) laid
    over them key by key (a nested mapping changes only the fields it names).

    Raises :class:`config.flows.InputError` when the file cannot be read or is not a mapping, and
    pydantic's ``ValidationError`` when a field is unknown or invalid.
    """
    from config.flows import PipelineConfig
    from flows.cli.train import read_mapping

    if config_file is None:
        return PipelineConfig()
    given = read_mapping(config_file, "PipelineConfig")
    return PipelineConfig.model_validate(_laid_over(PipelineConfig().model_dump(), given))


def _laid_over(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s values, merged recursively where both hold a mapping."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _laid_over(below, value)
        else:
            merged[key] = value
    return merged


class StageView:
    """What the display knows: the stage, when it began, the forecaster's fit and epoch, and the
    details read from the store (series ingested, trials finished)."""

    def __init__(self, config: PipelineConfig) -> None:
        from flows.pipeline import STAGES

        self.config = config
        allocator = ("allocator ingest", "train allocator")
        self.stages = [s for s in STAGES if config.allocator.enabled or s not in allocator]
        self.stage = ""
        self.began = time.monotonic()
        self.fit: tuple[int, int, int] | None = None  # fit number, epoch (1-based), epochs
        self.detail = ""
        self._trials_before: int | None = None

    def begin(self, stage: str) -> None:
        """A stage begins."""
        self.stage, self.began, self.fit, self.detail, self._trials_before = (
            stage,
            time.monotonic(),
            None,
            "",
            None,
        )

    def epoch(self, fit: int, epoch: int, epochs: int) -> None:
        """The forecaster finished ``epoch`` of ``epochs`` of its ``fit``-th fit."""
        self.fit = (fit, epoch, epochs)

    def describe(self) -> str:
        """The line shown: ``[3/7] train forecaster: fit 2, epoch 5/20; trial 1/3``."""
        if not self.stage:
            return "starting"
        number = self.stages.index(self.stage) + 1 if self.stage in self.stages else 0
        parts = [self.detail] if self.detail else []
        if self.stage == "train forecaster" and self.fit is not None:
            fit, epoch, epochs = self.fit
            parts.insert(0, f"fit {fit}, epoch {epoch}/{epochs}")
        label = "ingest + validate" if self.stage.endswith("ingest") else self.stage
        label = f"allocator: {label}" if self.stage == "allocator ingest" else label
        return f"[{number}/{len(self.stages)}] {label}" + (f": {'; '.join(parts)}" if parts else "")

    def poll(self, conn: Connection) -> None:
        """Read the stage's details from the store: series validated and stored, trials finished."""
        stage = self.stage
        if stage in ("ingest", "allocator ingest"):
            ingest = self.config.ingest if stage == "ingest" else self.config.allocator.ingest
            self.detail = _series_detail(conn, ingest.batch_id)
        elif stage in ("train forecaster", "train allocator"):
            model = self.config.forecaster if stage == "train forecaster" else self.config.allocator.train
            trials = model.tuning.trials
            if trials > 0:
                done = _finished_trials(conn, f"{model.tuning.study_name}-")
                if self._trials_before is None:
                    self._trials_before = done
                self.detail = f"trial {min(done - self._trials_before + 1, trials)}/{trials}"
            elif stage == "train allocator":
                self.detail = f"{getattr(model, 'timesteps', '?')} timesteps per seed"


def _series_detail(conn: Connection, batch_id: str) -> str:
    from storage.runs import list_ingest_runs

    runs = list_ingest_runs(conn, batch_id=batch_id)
    if not runs:
        return "planning"
    running = [r.symbol for r in runs if r.status == "running"]
    done = sum(r.status != "running" for r in runs)
    return f"{done}/{len(runs)} series validated and stored" + (
        f" (now {', '.join(running)})" if running else ""
    )


def _finished_trials(conn: Connection, prefix: str) -> int:
    """Finished Optuna trials (complete, pruned or failed) of the studies named ``prefix...``."""
    from sqlalchemy import text

    try:
        found = conn.execute(
            text(
                "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name LIKE :prefix AND t.state IN ('COMPLETE', 'PRUNED', 'FAIL')"
            ),
            {"prefix": prefix.replace("%", r"\%") + "%"},
        ).scalar_one()
    except Exception:  # no study yet: Optuna creates its tables with the first
        conn.rollback()
        return 0
    return int(found)


@contextmanager
def epoch_tap(on_epoch: Callable[[int, int, int], None]) -> Iterator[None]:
    """Call ``on_epoch(fit, epoch, epochs)`` after every epoch of every LSTM fit in the block.

    The forecaster's ``fit_lstm`` takes an ``epoch_callback`` that only watches (the tuner's pruner
    uses it); inside the block each fit gets one that reports here, then calls the fit's own.
    """
    from models.forecaster import training

    original = training.fit_lstm
    lock = threading.Lock()
    fits = [0]

    def tapped(*args: Any, epoch_callback: Any = None, epochs: int | None = None, **kwargs: Any) -> Any:
        with lock:
            fits[0] += 1
            fit = fits[0]
        config = args[4] if len(args) > 4 else kwargs["config"]
        total = config.epochs if epochs is None else epochs

        def observe(epoch: int, logs: dict[str, float]) -> None:
            on_epoch(fit, epoch + 1, total)
            if epoch_callback is not None:
                epoch_callback(epoch, logs)

        return original(*args, epoch_callback=observe, epochs=epochs, **kwargs)

    training.fit_lstm = tapped
    try:
        yield
    finally:
        training.fit_lstm = original


@contextmanager
def stage_display(settings: Settings, config: PipelineConfig) -> Iterator[StageView]:
    """Show the pipeline's stage while the body runs: a live line on a terminal (refreshed every
    0.5 s from the store and the epoch tap), one line per stage on stderr otherwise."""
    from flows.pipeline import watching_stages
    from tasks.store import store_for

    view = StageView(config)
    live = err.is_terminal
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    stop = threading.Event()

    def announce(stage: str) -> None:
        view.begin(stage)
        if not live:
            err.print(f"pipeline {view.describe()}", highlight=False, soft_wrap=True)

    with (
        Progress(*columns, console=err, transient=True, disable=not live) as progress,
        watching_stages(announce),
        epoch_tap(view.epoch),
    ):
        task_id = progress.add_task(view.describe(), total=None)

        def refresh() -> None:
            engine = store_for(settings)
            while not stop.wait(0.5):
                try:
                    with engine.connect() as conn:
                        view.poll(conn)
                except Exception:
                    continue
                finally:
                    progress.update(task_id, description=view.describe())

        poller = threading.Thread(target=refresh, daemon=True, name="fks-pipeline-stages")
        if live:
            poller.start()
        try:
            yield view
        finally:
            stop.set()
            if live:
                poller.join(timeout=2)
