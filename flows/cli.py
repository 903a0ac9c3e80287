"""The ``fks`` command line: one command per flow, plus views of the store and the quarantine.

Exit codes: 0 success, 2 bad usage or bad input (nothing written), 3 some rows were quarantined
(every good row was stored), 1 unexpected error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

app = typer.Typer(
    name="fks",
    help="FKS: market data, features, models, backtests and paper trading, orchestrated by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the bar store.", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(
    help="Train models (tracked in MLflow, registered with the alias challenger).", no_args_is_help=True
)
app.add_typer(train_app, name="train")
quarantine_app = typer.Typer(
    help="Rows that failed validation: list them, release or drop them.", no_args_is_help=True
)
app.add_typer(quarantine_app, name="quarantine")


out = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_BAD_INPUT = 2
EXIT_UNEXPECTED = 1
EXIT_QUARANTINED = 3
EXIT_REFUSED = 4


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _run_guarded(action: Callable[[], T]) -> T:
    """Run ``action`` and turn known failures into the CLI's exit codes."""
    from pydantic import ValidationError

    from config.flows import InputError
    from providers.base import DataFileError, NotSupported
    from tasks.data import IngestFailed

    try:
        return action()
    except IngestFailed as exc:
        _print_ingest(exc.summary.outcomes)
        for outcome in exc.summary.failed:
            err.print(
                f"[bold red]error:[/] {outcome.symbol} {outcome.timeframe}: {outcome.error}", soft_wrap=True
            )
        raise typer.Exit(EXIT_BAD_INPUT if exc.input_error else EXIT_UNEXPECTED) from None
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise _fail(problems, EXIT_BAD_INPUT) from None
    except (InputError, DataFileError, NotSupported, LookupError) as exc:
        raise _fail(str(exc).strip("'\""), EXIT_BAD_INPUT) from None


@contextmanager
def _polled_progress(
    settings: Any, label: str, read: Callable[[Any], tuple[int, int, str]]
) -> Iterator[None]:
    """Show a progress bar while the body runs, fed every 0.5 s by ``read(conn)`` on the store:
    ``(finished, total, description)`` (an empty description keeps ``label``)."""
    from tasks.store import store_for

    stop = threading.Event()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task_id = progress.add_task(label, total=None)

        def poll() -> None:
            engine = store_for(settings)
            while not stop.wait(0.5):
                try:
                    with engine.connect() as conn:
                        finished, total, description = read(conn)
                except Exception:  # the schema may not exist yet on a new database
                    continue
                progress.update(
                    task_id, total=max(total, 1), completed=finished, description=description or label
                )

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join(timeout=2)


def _progress_from_runs(settings: Any, batch_id: str, label: str) -> AbstractContextManager[None]:
    """A progress bar fed by the ``ingest_runs`` rows of ``batch_id`` (naming the series running)."""
    from storage import list_ingest_runs

    def read(conn: Any) -> tuple[int, int, str]:
        runs = list_ingest_runs(conn, batch_id=batch_id)
        running = [r.symbol for r in runs if r.status == "running"]
        return (
            sum(r.status != "running" for r in runs),
            len(runs),
            f"{label} {', '.join(running)}" if running else "",
        )

    return _polled_progress(settings, label, read)


def _fmt_ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d" if (value.hour, value.minute) == (0, 0) else "%Y-%m-%d %H:%M")


def _table(title: str, columns: list[str], rows: list[list[str]], numeric: set[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _span(first: datetime | None, last: datetime | None) -> str:
    return f"{_fmt_ts(first)} .. {_fmt_ts(last)}" if first else "-"


def _print_ingest(outcomes: list[Any]) -> None:
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
                _span(o.stored_first, o.stored_last),
                gaps if ok else "-",
            ]
        )
    online = [o for o in outcomes if getattr(o, "provider", "") or getattr(o, "verification", "")]
    if online:
        columns.append("provider")
        for row, o in zip(rows, outcomes, strict=True):
            check = f" ({o.verification})" if o.verification else ""
            row.append(f"{o.provider or o.source}{check}")
    out.print(_table("Ingested and validated", columns, rows, {"stored", "new", "updated", "quarantined"}))
    for o in online:
        for failover in o.failovers:
            err.print(f"[yellow]{o.symbol} {o.timeframe}: failed over from {failover}[/]")
    _print_docs(outcomes)


def _print_features(outcomes: list[Any]) -> None:
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
    out.print(_table("Features", columns, rows, {"rows", "columns", "warm-up"}))
    _print_docs(outcomes)


def _print_docs(outcomes: list[Any]) -> None:
    """Point at the Data Docs site, and at the page itself when there is one validation."""
    pages = [Path(o.docs_path) for o in outcomes if getattr(o, "docs_path", "")]
    if len(pages) == 1:
        out.print(f"Data Docs: {pages[0]}", soft_wrap=True)
    elif pages:
        site = next((p for p in pages[0].parents if (p / "index.html").exists()), pages[0].parent)
        out.print(f"Data Docs: {site / 'index.html'} ({len(pages)} validation pages)", soft_wrap=True)


def _exit_if_quarantined(outcomes: list[Any]) -> None:
    """Print the quarantine summary by reason and exit 3 when any row was quarantined."""
    reasons: dict[str, int] = {}
    for o in outcomes:
        for reason, count in o.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    total = sum(o.quarantined for o in outcomes)
    if not total:
        return
    by_reason = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
    err.print(
        f"[bold yellow]{total} row(s) quarantined[/] ({by_reason}); every good row was stored. "
        "Review them with `fks quarantine list`, then `fks quarantine release ID...` "
        "or `fks quarantine drop ID...`.",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_QUARANTINED)


def _symbols(symbol: list[str] | None, symbols: str | None) -> list[str]:
    names = list(symbol or [])
    if symbols:
        names += [s for s in symbols.split(",") if s.strip()]
    return names


@app.command()
def ingest(
    source: Annotated[
        str | None,
        typer.Option(
            help="csv, synthetic, auto (online providers by priority) or a provider asked first "
            "(binance, yahoo, polygon, alphavantage, coingecko); omit to load every enabled asset."
        ),
    ] = None,
    path: Annotated[Path | None, typer.Option(help="CSV file (with --source csv).")] = None,
    symbol: Annotated[list[str] | None, typer.Option(help="Symbol to load (repeatable).")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 1h or 1d.")] = None,
    date_format: Annotated[
        str | None, typer.Option(help="strftime format of the CSV dates, or epoch_s / epoch_ms.")
    ] = None,
    adjust: Annotated[bool, typer.Option(help="Scale OHLC by the file's Adj Close column.")] = False,
    asset_class: Annotated[
        str | None, typer.Option(help="equity, etf, index, fx or crypto (new symbols).")
    ] = None,
    calendar: Annotated[
        str | None, typer.Option(help="XNYS or another exchange, 24/5, 24/7 (new symbols).")
    ] = None,
    start: Annotated[datetime | None, typer.Option(help="First bar (UTC), inclusive.")] = None,
    end: Annotated[datetime | None, typer.Option(help="End (UTC), exclusive.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = 7,
    full: Annotated[
        bool, typer.Option(help="Re-read everything instead of resuming from the watermark.")
    ] = False,
) -> None:
    """Load bars into the store: a CSV file, a synthetic market, or every enabled asset's default source."""
    from config.flows import IngestConfig
    from config.settings import get_settings
    from flows.ingest import ingest as ingest_flow

    def run() -> None:
        config = IngestConfig.model_validate(
            {
                "source": source,
                "path": path,
                "symbols": _symbols(symbol, symbols),
                "timeframe": timeframe,
                "date_format": date_format,
                "adjust": adjust,
                "asset_class": asset_class,
                "calendar": calendar,
                "start": start,
                "end": end,
                "seed": seed,
                "full": full,
            }
        )
        settings = get_settings()
        with _progress_from_runs(settings, config.batch_id, "ingesting"):
            summary = ingest_flow(config, settings)
        _print_ingest(summary.outcomes)
        _exit_if_quarantined(summary.outcomes)

    _run_guarded(run)


@app.command()
def pipeline() -> None:
    """The main job: every stage on the shipped sample data, ending with a summary."""
    from config.flows import PipelineConfig
    from config.settings import get_settings
    from flows.pipeline import pipeline as pipeline_flow

    def run() -> None:
        config = PipelineConfig()
        settings = get_settings()
        with _progress_from_runs(settings, config.ingest.batch_id, "ingesting"):
            summary = pipeline_flow(config, settings)
        out.rule("FKS pipeline")
        _print_ingest(summary.ingest.outcomes)
        _print_features(summary.features.outcomes)
        _print_training(summary.forecaster)
        _print_backtest(summary.backtest)
        _print_promotion(summary.promotion)
        out.print(f"Database: {settings.db_url}   Features: {settings.data_dir / 'features'}")
        out.print(
            "Look closer:  fks data list  |  fks quarantine list  |  fks backtest  |  "
            f"mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}  |  "
            "prefect server start (then open http://127.0.0.1:4200)"
        )
        _exit_if_quarantined(summary.ingest.outcomes)

    _run_guarded(run)


@app.command()
def validate(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every stored series).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
    warnings: Annotated[
        bool,
        typer.Option(
            "--warnings",
            help="List the stored bars flagged by warnings (large moves, stale prices...) instead.",
        ),
    ] = False,
) -> None:
    """Re-validate stored bars with the bars suite; failing bars move to quarantine (exit 3).

    With --warnings, list the bars that were kept but flagged (a one-way move beyond the robust
    bound, a stale close, an unadjusted recorded split), with the reason, and validate nothing."""
    from config.flows import ValidateConfig
    from config.settings import get_settings
    from flows.validate import validate as validate_flow

    if warnings:
        _run_guarded(lambda: _print_warnings(_symbols(None, symbols), timeframe))
        return

    def run() -> None:
        config = ValidateConfig(symbols=_symbols(None, symbols), timeframe=timeframe)
        with err.status("validating stored bars"):
            summary = validate_flow(config, get_settings())
        columns = ["symbol", "tf", "rows checked", "quarantined", "warnings", "missing bars (gaps)"]
        rows = [
            [
                o.symbol,
                o.timeframe,
                str(o.rows_checked),
                str(o.quarantined),
                str(o.warned),
                f"{o.missing_bars} ({o.gap_count}; longest {o.longest_gap})" if o.gap_count else "0",
            ]
            for o in summary.outcomes
        ]
        out.print(_table("Validated", columns, rows, {"rows checked", "quarantined", "warnings"}))
        _print_docs(summary.outcomes)
        _exit_if_quarantined(summary.outcomes)

    _run_guarded(run)


def _print_warnings(symbols: list[str] | None, timeframe: str | None) -> None:
    from config.settings import get_settings
    from storage import list_warnings
    from tasks.store import store_for

    with store_for(get_settings()).connect() as conn:
        found = [w for w in list_warnings(conn, timeframe=timeframe) if not symbols or w.symbol in symbols]
    if not found:
        out.print("No stored bar is flagged by a warning.")
        return
    rows = [
        [w.symbol, w.timeframe, w.ts.isoformat(), w.expectation, w.reason, f"{w.flagged_at:%Y-%m-%d %H:%M}"]
        for w in found
    ]
    columns = ["symbol", "tf", "ts", "warning", "reason", "flagged at"]
    out.print(_table(f"Warnings ({len(found)} bars kept and flagged)", columns, rows, set()))


@app.command("features")
def features_command(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every stored series).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
    feature_set: Annotated[
        str, typer.Option("--set", help="Feature set name (config/feature_sets.yaml).")
    ] = "default",
) -> None:
    """Build a feature set from stored bars, validate it and store it (unchanged bars are a cache hit)."""
    from config.flows import FeaturesConfig
    from config.settings import get_settings
    from flows.features import features as features_flow

    def run() -> None:
        config = FeaturesConfig(symbols=_symbols(None, symbols), timeframe=timeframe, feature_set=feature_set)
        with err.status("building features"):
            summary = features_flow(config, get_settings())
        _print_features(summary.outcomes)

    _run_guarded(run)


QUICK_FORECASTER: dict[str, Any] = {
    "units": [16],
    "epochs": 5,
    "patience": 2,
    "walk_forward.folds": 2,
    "tuning.trials": 3,
    "tuning.epochs": 2,
}


def _forecaster_config(config_file: Path | None, preset: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """ForecasterConfig from an optional YAML/JSON file, then a preset, then command-line overrides."""
    import yaml

    from config.flows import InputError
    from config.models import ForecasterConfig

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{config_file}: cannot read the config ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{config_file}: expected a mapping of ForecasterConfig fields")
    for key, value in [*preset.items(), *overrides.items()]:
        if value is not None:
            if "." in key:
                outer, inner = key.split(".", 1)
                data.setdefault(outer, {})[inner] = value
            else:
                data[key] = value
    return ForecasterConfig.model_validate(data)


def _print_training(summary: Any) -> None:
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
    out.print(_table(title, columns, rows, set(columns[1:])))
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


@train_app.command("forecaster")
def train_forecaster_command(
    symbol: Annotated[str | None, typer.Option(help="Stored series to train on (default SPX).")] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 1h or 1d (default 1d).")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML/JSON of ForecasterConfig fields.")
    ] = None,
    feature_set: Annotated[str | None, typer.Option("--set", help="Feature set (default: default).")] = None,
    horizon: Annotated[int | None, typer.Option(help="Forecast horizon in bars.")] = None,
    lookback: Annotated[int | None, typer.Option(help="Window length in bars.")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may stop sooner).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Walk-forward folds.")] = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials before training (0: no tuning).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything random.")] = None,
    quick: Annotated[
        bool, typer.Option(help="A small model and 3 short trials: a first look in a minute or two.")
    ] = False,
) -> None:
    """Train the LSTM forecaster (purged splits, walk-forward, baselines, one test) and register it."""
    from config.settings import get_settings
    from flows.train_forecaster import train_forecaster

    def run() -> None:
        preset = QUICK_FORECASTER if quick else {}
        config = _forecaster_config(
            config_file,
            preset,
            {
                "symbol": symbol.upper() if symbol else None,
                "timeframe": timeframe,
                "feature_set": feature_set,
                "horizon": horizon,
                "lookback": lookback,
                "epochs": epochs,
                "walk_forward.folds": folds,
                "tuning.trials": trials,
                "seed": seed,
            },
        )
        with err.status(f"training the forecaster on {config.symbol} {config.timeframe}"):
            summary = train_forecaster(config, get_settings())
        _print_training(summary)

    _run_guarded(run)


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


def _print_backtest(summary: Any) -> None:
    names = list(summary.metrics)
    rows = []
    for key, label, fmt in BACKTEST_ROWS:
        values = [summary.metrics[n].get(key) for n in names]
        rows.append([label, *("-" if v is None else fmt.format(v) for v in values)])
    title = (
        f"Backtest {summary.model} v{summary.version} on {summary.symbol} {summary.timeframe}, "
        f"{summary.window_start} .. {summary.window_end}, net of costs"
    )
    out.print(_table(title, ["metric", *names], rows, set(names)))
    out.print(f"Tearsheet: {summary.tearsheet}", soft_wrap=True)


@app.command("backtest")
def backtest_command(
    model: Annotated[str, typer.Option(help="name@alias or name/version.")] = "fks-forecaster@challenger",
    strategy: Annotated[str, typer.Option(help="long_flat or long_short.")] = "long_flat",
    commission_bps: Annotated[float, typer.Option(help="Commission per trade, bps of notional.")] = 1.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage per trade, bps of notional.")] = 2.0,
    windows: Annotated[int, typer.Option(help="Walk-forward blocks in the out-of-sample window.")] = 3,
) -> None:
    """Backtest a registered model on its out-of-sample window net of costs; write the tearsheet."""
    from config.backtest import BacktestConfig
    from config.settings import get_settings
    from flows.backtest import backtest

    def run() -> None:
        config = BacktestConfig.model_validate(
            {
                "model": model,
                "strategy": strategy,
                "windows": windows,
                "costs": {"commission_bps": commission_bps, "slippage_bps": slippage_bps},
            }
        )
        with err.status(f"backtesting {model}"):
            summary = backtest(config, get_settings())
        _print_backtest(summary)

    _run_guarded(run)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_promotion(summary: Any) -> None:
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


@app.command("promote")
def promote_command(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "fks-forecaster",
    force: Annotated[
        bool, typer.Option(help="Promote even if the gate refuses (recorded as forced).")
    ] = False,
    metric: Annotated[str, typer.Option(help="Primary metric of the gate.")] = "sharpe",
    margin: Annotated[float, typer.Option(help="Required margin over the champion.")] = 0.05,
    min_trades: Annotated[int, typer.Option(help="Guard: fewest trades the challenger must make.")] = 10,
    max_drawdown: Annotated[
        float, typer.Option(help="Guard: worst max drawdown allowed (e.g. -0.35).")
    ] = -0.35,
) -> None:
    """The gate: promote the challenger only if it beats the champion and the baselines net of costs.

    Exit 0 when promoted, 4 when refused (the reasons are printed).
    """
    from config.backtest import PromoteConfig
    from config.settings import get_settings
    from flows.promote import promote

    def run() -> None:
        config = PromoteConfig.model_validate(
            {
                "model": model,
                "force": force,
                "actor": _actor(),
                "policy": {
                    "primary_metric": metric,
                    "min_margin_vs_champion": margin,
                    "min_trades": min_trades,
                    "max_drawdown_floor": max_drawdown,
                },
            }
        )
        with err.status(f"judging {model}@challenger"):
            summary = promote(config, get_settings())
        _print_promotion(summary)
        if not summary.promoted:
            raise typer.Exit(EXIT_REFUSED)

    _run_guarded(run)


@app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "fks-forecaster",
    reason: Annotated[str, typer.Option(help="Why: kept on the version and in the promotions table.")] = "",
) -> None:
    """Give the champion alias back to the previous champion."""
    from config.settings import get_settings
    from tasks.promote import rollback_model

    def run() -> None:
        restored = rollback_model(model, get_settings(), actor=_actor(), reason=reason)
        out.print(f"{model}@champion is version {restored} again")

    _run_guarded(run)


@quarantine_app.command("list")
def quarantine_list(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    status: Annotated[str, typer.Option(help="quarantined, released, dropped or all.")] = "quarantined",
) -> None:
    """Rows held back by validation, with the expectations they failed."""
    from config.settings import get_settings
    from storage import list_quarantine
    from tasks.store import store_for

    def run() -> None:
        if status not in {"quarantined", "released", "dropped", "all"}:
            raise _fail(
                f"unknown status {status!r}: use quarantined, released, dropped or all", EXIT_BAD_INPUT
            )
        with store_for(get_settings()).connect() as conn:
            entries = list_quarantine(
                conn, status=None if status == "all" else status, symbol=symbol.upper() if symbol else None
            )
        if not entries:
            out.print(f"No {'' if status == 'all' else status + ' '}rows.")
            return
        rows = [
            [
                str(e.id),
                e.symbol,
                e.timeframe,
                _fmt_ts(e.ts),
                ", ".join(e.failed_expectations),
                e.reasons,
                e.status,
            ]
            for e in entries
        ]
        out.print(
            _table("Quarantine", ["id", "symbol", "tf", "ts", "failed", "reasons", "status"], rows, {"id"})
        )

    _run_guarded(run)


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@quarantine_app.command("release")
def quarantine_release(
    ids: Annotated[list[int], typer.Argument(help="Quarantine ids (see `fks quarantine list`).")],
    note: Annotated[str, typer.Option(help="Why: kept in the audit log.")] = "",
) -> None:
    """Accept rows a person judged good: re-validate, their failed expectations waived, and store them."""
    from config.settings import get_settings
    from tasks.store import store_for
    from tasks.validation import release_quarantined

    def run() -> None:
        settings = get_settings()
        released = release_quarantined(store_for(settings), ids, settings=settings, actor=_actor(), note=note)
        for r in released:
            out.print(f"released {r.id}: {r.symbol} {r.timeframe} {_fmt_ts(r.ts)} is now stored")

    _run_guarded(run)


@quarantine_app.command("drop")
def quarantine_drop(
    ids: Annotated[list[int], typer.Argument(help="Quarantine ids (see `fks quarantine list`).")],
    note: Annotated[str, typer.Option(help="Why: kept in the audit log.")] = "",
) -> None:
    """Reject rows for good: they never reach the bars table (the decision is logged)."""
    from config.settings import get_settings
    from tasks.store import store_for
    from tasks.validation import drop_quarantined

    def run() -> None:
        drop_quarantined(store_for(get_settings()), ids, actor=_actor(), note=note)
        out.print(f"dropped {', '.join(map(str, ids))}")

    _run_guarded(run)


@data_app.command("list")
def data_list() -> None:
    """Every stored series: symbol, timeframe, first and last bar, rows and gaps against its calendar."""
    from config.settings import get_settings
    from market.calendars import get_calendar
    from storage import bar_gaps, bar_summary, get_asset
    from storage.verifications import latest_verifications
    from tasks.store import store_for

    engine = store_for(get_settings())
    table = Table(title="Stored bars", title_justify="left")
    columns = ("symbol", "tf", "first", "last", "rows", "missing bars", "gaps", "longest gap", "cross-check")
    for col in columns:
        table.add_column(col, justify="right" if col in {"rows", "missing bars", "gaps"} else "left")
    with engine.connect() as conn:
        summary = bar_summary(conn)
        checks = {(c.symbol, c.timeframe): c for c in latest_verifications(conn).itertuples(index=False)}
        for row in summary.itertuples(index=False):
            check = checks.get((row.symbol, row.timeframe))
            asset = get_asset(conn, row.symbol)
            gaps = bar_gaps(conn, row.symbol, row.timeframe, get_calendar(asset.calendar)) if asset else None
            longest = gaps.longest if gaps else None
            table.add_row(
                row.symbol,
                row.timeframe,
                _fmt_ts(row.first),
                _fmt_ts(row.last),
                str(row.rows),
                str(gaps.missing) if gaps else "?",
                str(len(gaps.gaps)) if gaps else "?",
                f"{longest.bars} bars from {longest.start:%Y-%m-%d %H:%M}" if longest else "-",
                f"{check.status} ({check.primary_provider} vs {check.secondary_provider or '-'})"
                if check is not None
                else "-",
            )
    if summary.empty:
        out.print("The store is empty: run `fks ingest` or `fks pipeline`.")
    else:
        out.print(table)


# failures the CLI reports itself, in one line with the fix: Prefect's copies with tracebacks are noise
_REPORTED_FAILURES = (
    "InputError",
    "IngestFailed",
    "BackfillIncomplete",
    "DataFileError",
    "AllProvidersFailed",
    "LakeError",
    "ValidationError",
)


class _ReportedFailures(logging.Filter):
    """Drop Prefect's error records about failures the CLI prints itself (bad input, failed series)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is about one of ``_REPORTED_FAILURES``."""
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        names = {type(exc).__name__} if exc is not None else set()
        text = record.getMessage()
        return not (
            names & set(_REPORTED_FAILURES)
            or any(f"{n}(" in text or f"{n}:" in text for n in _REPORTED_FAILURES)
        )


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home from a research box
    os.environ.setdefault(
        "TF_CPP_MIN_LOG_LEVEL", "3"
    )  # TensorFlow's C++ chatter; Python errors still surface
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    for console in (out, err):
        if not console.is_terminal:
            console.width = max(
                console.width, 160
            )  # piped or captured: do not squeeze tables into 80 columns
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)  # the CloudPickle notice on every log_model
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_ReportedFailures())
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # an unexpected failure: say what it was, exit 1
        err.print(f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc}", soft_wrap=True)
        raise SystemExit(EXIT_UNEXPECTED) from exc


def _add_subcommand_modules() -> None:
    """Command groups that live in their own modules (registered last: they import this module's helpers)."""
    from flows.cli_actions import actions_app
    from flows.cli_backfill import backfill_command, gaps_command
    from flows.cli_lake import lake_app
    from flows.cli_market import fundamentals_app, market_app
    from flows.cli_providers import providers_app

    app.add_typer(lake_app, name="lake", help="Export bars to the Parquet lake (local or S3); import them.")
    app.add_typer(fundamentals_app, name="fundamentals", help="SEC EDGAR company facts and filings.")
    app.add_typer(market_app, name="market", help="Market overview (CoinMarketCap listings).")
    app.add_typer(providers_app, name="providers", help="Online providers: breakers, budgets, discrepancies.")
    app.add_typer(actions_app, name="actions", help="Corporate actions (splits) recorded from the providers.")
    app.command("backfill")(backfill_command)
    app.command("gaps")(gaps_command)


_add_subcommand_modules()


if __name__ == "__main__":
    main()
