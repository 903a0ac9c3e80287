"""The summaries the ``fks`` commands print: ingestion, features, training, backtest, promotion,
and the pipeline's ten-second read that strings them together.

Each function takes a flow's summary (or its outcomes) and prints it on :data:`flows.cli._ui.out`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from flows.cli._ui import EXIT_BAD_INPUT, EXIT_UNEXPECTED, err, out, span, table

if TYPE_CHECKING:
    from backtest.evaluate import BacktestSummary
    from config.settings import Settings
    from flows.pipeline import PipelineSummary
    from ingestion.features import FeaturesOutcome
    from ingestion.ingest import IngestFailed, IngestOutcome
    from models.allocator.service import AllocatorSummary
    from models.forecaster.service import TrainingSummary
    from models.promotion import PromotionSummary

BACKTEST_ROWS = [
    ("total_return", "total return", "{:.1%}"),
    ("annual_return", "annual return", "{:.1%}"),
    ("volatility", "volatility", "{:.1%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("max_drawdown", "max drawdown", "{:.1%}"),
    ("exposure", "exposure", "{:.0%}"),
    ("trades", "trades", "{:.0f}"),
]
"""The backtest table's rows: (metric key, label, format)."""


class Documented(Protocol):
    """An outcome that may name its Data Docs page (ingest, validate, features, lake import)."""

    @property
    def docs_path(self) -> str: ...


def print_docs(outcomes: Sequence[Documented]) -> None:
    """Point at the Data Docs site, and at the page itself when there is one validation."""
    pages = [Path(o.docs_path) for o in outcomes if getattr(o, "docs_path", "")]
    if len(pages) == 1:
        out.print(f"Data Docs: {pages[0]}", soft_wrap=True)
    elif pages:
        site = next((p for p in pages[0].parents if (p / "index.html").exists()), pages[0].parent)
        out.print(f"Data Docs: {site / 'index.html'} ({len(pages)} validation pages)", soft_wrap=True)


def print_ingest(outcomes: Sequence[IngestOutcome]) -> None:
    """The ingested series (stored, new, updated, quarantined rows, span, gaps; the provider when
    online), the failovers, and where the Data Docs are."""
    columns = ["series", "status", "stored", "new", "updated", "quarantined", "span", "missing bars"]
    rows = []
    for o in outcomes:
        ok = o.status == "success"
        gaps = f"{o.missing_bars} in {o.gap_count} gap(s), longest {o.longest_gap}" if o.gap_count else "0"
        rows.append(
            [
                f"{o.symbol} {o.timeframe}",
                "[green]ok[/]" if ok else "[red]failed[/]",
                str(o.stored_rows),
                str(o.inserted),
                str(o.updated),
                str(o.quarantined),
                span(o.stored_first, o.stored_last),
                gaps if ok else "-",
            ]
        )
    online = [o for o in outcomes if getattr(o, "provider", "") or getattr(o, "verification", "")]
    if online:
        columns.append("provider")
        for row, o in zip(rows, outcomes, strict=True):
            check = f" ({o.verification})" if o.verification else ""
            row.append(f"{o.provider or o.source}{check}")
    out.print(table("Ingested and validated", columns, rows, {"stored", "new", "updated", "quarantined"}))
    for o in online:
        for failover in o.failovers:
            err.print(f"[yellow]{o.symbol} {o.timeframe}: failed over from {failover}[/]")
        if o.held:
            err.print(
                f"[yellow]{o.symbol} {o.timeframe}: {o.held} stored bar(s) kept: "
                f"{o.provider or o.source} disagreed with them before (fks providers discrepancies)[/]"
            )
        if o.healed:
            out.print(
                f"{o.symbol} {o.timeframe}: {o.healed} provisional bar(s) replaced by the primary's values "
                "(recorded in bar_replacements)"
            )
        if o.provisional:
            err.print(
                f"[yellow]{o.symbol} {o.timeframe}: {o.provisional} provisional bar(s) from a fallback "
                "provider; the next ingest from the primary or `fks reconcile` heals them[/]"
            )
    print_docs(outcomes)


def report_ingest_failure(exc: Exception) -> int:
    """A :class:`ingestion.ingest.IngestFailed`: the ingest table, one error line per failed series, and
    the exit code (2 when the input was at fault, else 1). A handler for ``run_guarded``, registered
    for ``IngestFailed`` only (so ``exc`` is one)."""
    failed = cast("IngestFailed", exc)
    print_ingest(failed.summary.outcomes)
    for outcome in failed.summary.failed:
        err.print(
            f"[bold red]error:[/] {outcome.symbol} {outcome.timeframe}: {outcome.error}", soft_wrap=True
        )
    return EXIT_BAD_INPUT if failed.input_error else EXIT_UNEXPECTED


def print_features(outcomes: Sequence[FeaturesOutcome]) -> None:
    """The feature sets built per series (rows, columns, warm-up, cached or new), and the Data Docs."""
    columns = ["series", "feature set", "rows", "columns", "warm-up", "build"]
    rows = [
        [
            f"{o.symbol} {o.timeframe}",
            f"{o.feature_set} v{o.version}",
            str(o.rows),
            str(o.columns),
            str(o.warmup),
            f"#{o.build_id} cached" if o.cache_hit else f"#{o.build_id} new, validated",
        ]
        for o in outcomes
    ]
    out.print(table("Features", columns, rows, {"rows", "columns", "warm-up"}))
    print_docs(outcomes)


def print_training(summary: TrainingSummary) -> None:
    """The forecaster beside its baselines (walk-forward and test, out of sample), the tuning, the
    test forecasts traded net of costs, and the registered version."""
    columns = [
        "model",
        "walk-forward RMSE (mean)",
        "test RMSE",
        "test dir. accuracy",
        "test IC",
        "test rank IC",
    ]
    rows = [
        [
            name,
            f"{summary.walk_forward_rmse.get(name, float('nan')):.6f}",
            f"{m['rmse']:.6f}",
            f"{m['directional_accuracy']:.3f}",
            f"{m['ic']:.3f}",
            f"{m['rank_ic']:.3f}",
        ]
        for name, m in summary.test.items()
    ]
    title = f"Forecaster {summary.symbol} {summary.timeframe} (data {summary.data_window})"
    out.print(table(title, columns, rows, set(columns[1:])))
    if summary.tuned:
        out.print(f"Tuned with Optuna: {summary.tuned}", soft_wrap=True)
    u = summary.uplift
    nan = float("nan")
    out.print(
        f"Test RMSE: LSTM {u.get('rmse_model', nan):.6f} vs best baseline "
        f"{u.get('rmse_best_baseline')} {u.get('rmse_baseline', nan):.6f}; directional accuracy: "
        f"LSTM {u.get('directional_accuracy_model', nan):.3f} vs "
        f"{u.get('directional_accuracy_best_baseline')} {u.get('directional_accuracy_baseline', nan):.3f} "
        "(walk-forward and test are out of sample).",
        soft_wrap=True,
    )
    for strategy, m in summary.strategies.items():
        out.print(
            f"Trading the test forecasts {strategy} net of costs: total return {m['total_return']:.1%}, "
            f"Sharpe {m['sharpe']:.2f}, max drawdown {m['max_drawdown']:.1%}, {m['trades']:.0f} trades.",
            soft_wrap=True,
        )
    out.print(
        f"Registered {summary.registered_name} version {summary.version} as @{summary.alias} "
        f"(run {summary.run_id}).",
        soft_wrap=True,
    )


ALLOCATOR_ROWS = [
    ("total_return", "total return", "{:.1%}"),
    ("annual_return", "annual return", "{:.1%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("max_drawdown", "max drawdown", "{:.1%}"),
    ("turnover", "turnover (x/yr)", "{:.1f}"),
    ("costs_paid", "costs paid", "{:.2%}"),
]
"""The figures :func:`print_allocator_training` shows per strategy."""


def print_allocator_training(summary: AllocatorSummary) -> None:
    """The agent beside every baseline on the test span (one evaluation, net of the same costs),
    the seeds' validation rewards, and the registered version."""
    names = list(summary.test)
    rows = []
    for key, label, fmt in ALLOCATOR_ROWS:
        values = [summary.test[n].get(key) for n in names]
        rows.append([label, *("-" if v is None else fmt.format(v) for v in values)])
    title = (
        f"Allocator {summary.algo.upper()} on {', '.join(summary.symbols)} {summary.timeframe} "
        f"({summary.source}; data {summary.data_window}), test span net of costs"
    )
    out.print(table(title, ["metric", *names], rows, set(names)))
    seeds = ", ".join(f"seed {s}: {v:.4f}" for s, v in summary.seeds.items())
    out.print(
        f"Validation reward {seeds}; kept seed {summary.seed_kept} ({summary.timesteps} steps). "
        f"Best baseline on Sharpe: {summary.best_baseline}.",
        soft_wrap=True,
    )
    if summary.tuned:
        out.print(f"Tuned with Optuna on validation reward: {summary.tuned}", soft_wrap=True)
    out.print(
        f"Registered {summary.registered_name} version {summary.version} as @{summary.alias} "
        f"(run {summary.run_id}).",
        soft_wrap=True,
    )


def print_backtest(summary: BacktestSummary) -> None:
    """The model's and the baselines' figures net of costs (:data:`BACKTEST_ROWS`), and the tearsheet."""
    names = list(summary.metrics)
    rows = []
    for key, label, fmt in BACKTEST_ROWS:
        values = [summary.metrics[n].get(key) for n in names]
        rows.append([label, *("-" if v is None else fmt.format(v) for v in values)])
    title = (
        f"Backtest {summary.model} v{summary.version} on {summary.symbol} {summary.timeframe}, "
        f"{summary.window_start} .. {summary.window_end}, net of costs"
    )
    out.print(table(title, ["metric", *names], rows, set(names)))
    out.print(f"Tearsheet: {summary.tearsheet}", soft_wrap=True)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_promotion(summary: PromotionSummary) -> None:
    """The gate's decision (promoted, forced or refused), the figures it compared, its reasons, and
    the tearsheet of the backtests it decided on."""
    colour = {"promoted": "green", "forced": "yellow", "refused": "red"}[summary.outcome]
    champion = f"champion v{summary.champion_version}" if summary.champion_version else "no champion yet"
    out.print(
        f"[bold {colour}]{summary.outcome}[/]: {summary.model} v{summary.challenger_version} vs {champion} "
        f"and best baseline '{summary.baseline_name}' on {summary.window}, net of costs "
        f"({summary.primary_metric}: challenger {_num(summary.challenger_value)}, "
        f"champion {_num(summary.champion_value)}, baseline {_num(summary.baseline_value)})",
        soft_wrap=True,
    )
    for reason in summary.reasons:
        out.print(f"  - {reason}", soft_wrap=True)
    if summary.tearsheet:
        out.print(f"Tearsheet: {summary.tearsheet}", soft_wrap=True)


def print_pipeline(summary: PipelineSummary, settings: Settings) -> None:
    """The pipeline's summary: every stage's table in order, where things are, how to look closer."""
    out.rule("FKS pipeline")
    print_ingest(summary.ingest.outcomes)
    print_features(summary.features.outcomes)
    print_training(summary.forecaster)
    print_backtest(summary.backtest)
    print_promotion(summary.promotion)
    if summary.allocator_ingest is not None:
        print_ingest(summary.allocator_ingest.outcomes)
    if summary.allocator is not None:
        print_allocator_training(summary.allocator)
    from ingestion.features import features_root

    out.print(f"Database: {shown_url(settings.db_url)}   Features: {features_root(settings).uri}")
    out.print(
        "Look closer:  fks data list  |  fks quarantine list  |  fks backtest  |  "
        f"{mlflow_ui_hint(settings.mlflow_tracking_uri)}  |  "
        "fks server start (the Prefect UI)  |  fks serve, then fks trade --paper --replay START END"
    )


def shown_url(url: str) -> str:
    """A database or server URL as it may be printed: its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: printed as given, it names no password field
        return url


def mlflow_ui_hint(tracking_uri: str) -> str:
    """Where to look at the MLflow runs and registry: a tracking server's own UI, else the command
    that opens one on the local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"the MLflow UI at {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"
