"""Backtesting a registered model version: its own pyfunc on raw bars, net of costs, with a tearsheet."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from config.backtest import BacktestConfig
from config.flows import IngestConfig, InputError
from config.models import ForecasterConfig
from config.settings import Settings
from flows.backtest import backtest
from flows.ingest import ingest
from flows.train_forecaster import train_forecaster

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SMALL = ForecasterConfig(symbol="GOOGL", lookback=10, units=(8,), epochs=2, walk_forward={"folds": 1}, seed=4)


def test_backtest_of_the_challenger_writes_a_tearsheet_and_logs_it(settings: Settings) -> None:
    ingest(IngestConfig(symbols=["GOOGL"]), settings)
    trained = train_forecaster(SMALL, settings)
    summary = backtest(BacktestConfig(windows=2), settings)
    assert summary.version == trained.version and summary.symbol == "GOOGL"
    names = list(summary.metrics)
    assert names[0].startswith("fks-forecaster v1") and "buy and hold" in names
    assert {"baseline ridge", "baseline hist_gb"} <= set(names)
    hold = summary.metrics["buy and hold"]
    assert hold["trades"] == 1 and hold["exposure"] > 0.95  # held through the whole window
    assert len(summary.blocks) == 2
    page = Path(summary.tearsheet)
    assert page.exists() and page.is_relative_to(Path(settings.data_dir) / "reports" / "backtests")
    assert page.parent.name.startswith("long_flat-")
    html = page.read_text()
    assert "buy and hold" in html and "GOOGL" in html and "bps" in html
    assert "<td>GOOGL</td>" in html  # the trades name the symbol
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    logged = {a.path for a in client.list_artifacts(trained.run_id, f"backtest/{page.parent.name}")}
    assert f"backtest/{page.parent.name}/tearsheet.html" in logged
    assert "backtest_sharpe" in client.get_run(trained.run_id).data.metrics


def test_unknown_model_is_bad_input(settings: Settings) -> None:
    with pytest.raises(InputError, match="no version of 'nope'"):
        backtest(BacktestConfig(model="nope@champion"), settings)
