"""End to end (called from test_cli after it trained and promoted a forecaster): `fks serve`, then
`fks trade --paper --replay` over the forecaster's test window through the REST service; the paper
account's equity is the backtest's (to 1e-6 with spread, slippage-as-price and partial fills off)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from config.backtest import EvaluationConfig
from config.settings import Settings
from execution.client import HEADER
from tests.integration.test_desk import risk_file
from tests.serving_support import free_port

FKS = str(Path(sys.executable).with_name("fks"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "FKS_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "mlruns" / "artifacts"),
        "COLUMNS": "200",
        **extra,
    }


def _fks(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FKS, *args], cwd=tmp_path, env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=600
    )


def replay_the_served_champion(tmp_path: Path) -> None:
    """With ``fks-forecaster@champion`` registered in ``tmp_path``'s stores (GOOGL, by
    ``test_cli.test_train_backtest_promote_and_rollback_exit_codes``, which calls this so that one
    training serves both): `fks keys create`, `fks serve`, `fks trade --paper --replay` over the
    champion's test window; the paper equity is the backtest's to 1e-6."""
    created = _fks(tmp_path, "keys", "create", "--name", "desk")
    assert created.returncode == 0, created.stderr
    key = next(w for w in created.stdout.split() if w.startswith("fks_"))

    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'cli.db'}",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        data_dir=tmp_path / "data",
    )
    from backtest.evaluate import evaluate_model, load_series
    from models.family import get_family
    from models.registry import resolve_model
    from models.tracking import use_tracking
    from tasks.store import store_for

    use_tracking(settings.mlflow_tracking_uri)
    ref = resolve_model("fks-forecaster@champion", family=get_family("forecaster"))
    start, end = ref.test_start, ref.test_end

    port = free_port()
    server = subprocess.Popen(
        [FKS, "serve", "--port", str(port)], cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            time.sleep(0.5)
        service = {"FKS_SERVICE_URL": url, "FKS_SERVICE_API_KEY": key}
        args = ["trade", "--paper", "--replay", start.isoformat(), end.isoformat(), "--symbols", "GOOGL"]
        exact = ["--slippage-bps", "0", "--spread-bps", "0", "--fee-bps", "3", "--volume-share", "0"]
        wide = ["--risk-file", str(risk_file(tmp_path)), "--json"]
        traded = _fks(tmp_path, *args, *exact, *wide, **service)
        assert traded.returncode == 0, traded.stderr
        summary = json.loads(traded.stdout)
        assert summary["cycles"] > 50 and summary["orders"] > 0 and not summary["halted"]

        chart = httpx.get(f"{url}/v1/overview/assets/GOOGL", headers={HEADER: key}, timeout=120)
        assert chart.status_code == 200, chart.text
        _the_asset_page_shows_the_test_and_served_forecasts(chart.json(), settings, summary["cycles"])

        # a wrong key stops before anything is traded, saying what to fix
        refused = _fks(
            tmp_path, *args, "--account", "other", *wide, FKS_SERVICE_URL=url, FKS_SERVICE_API_KEY="nope"
        )
        assert refused.returncode == 5 and "FKS_SERVICE_API_KEY" in refused.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)

    engine = store_for(settings)
    bars, calendar = load_series(engine, "GOOGL", "1d")
    config = EvaluationConfig(costs={"commission_bps": 3.0, "slippage_bps": 0.0})
    evaluation, _ = evaluate_model(get_family("forecaster"), ref, bars, config, calendar=calendar)
    expected = evaluation.result.equity
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        rows = conn.execute(
            "SELECT ts, equity FROM equity_history WHERE account = 'default' ORDER BY ts"
        ).fetchall()
        served = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    equity = pd.Series([e for _, e in rows], index=pd.to_datetime([t for t, _ in rows], unit="ms", utc=True))
    assert served >= summary["cycles"] - 1  # every decision came through the REST service
    assert equity.index.equals(expected.index)
    np.testing.assert_allclose(
        equity.to_numpy() / 100_000.0, expected.to_numpy() / expected.iloc[0], rtol=1e-6
    )


def _the_asset_page_shows_the_test_and_served_forecasts(
    chart: dict[str, object], settings: Settings, cycles: int
) -> None:
    """The asset page's out-of-sample forecasts: the champion's test forecasts, as its training run
    logged them, and the forecasts the service answered the desk, each beside the realised log
    return over the next bar (1-day horizon)."""
    import mlflow

    from models.registry import get_version_by_alias
    from storage import read_bars
    from tasks.store import store_for

    rows = pd.DataFrame(chart["forecasts"])
    rows["ts"] = pd.to_datetime(rows["ts"], unit="s", utc=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    version = get_version_by_alias("fks-forecaster", "champion")
    assert version is not None
    path = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="predictions/test_predictions.csv"
    )
    logged = pd.read_csv(path, index_col=0)
    logged.index = pd.to_datetime(logged.index, utc=True)
    test = rows[rows["source"] == f"fks-forecaster v{version.version} test"].set_index("ts")
    assert test.index.equals(logged.index)
    np.testing.assert_allclose(test["forecast"].to_numpy(), logged["lstm"].to_numpy(), rtol=1e-12)
    served = rows[rows["source"] == "fks-forecaster served"]
    assert len(served) >= cycles - 1  # the desk's decisions, one per bar
    with store_for(settings).connect() as conn:
        close = read_bars(conn, "GOOGL", "1d")["close"]
    realised = (np.log(close).shift(-1) - np.log(close)).reindex(test.index)
    known = test["realised"].notna()
    assert known.sum() > 50
    np.testing.assert_allclose(test.loc[known, "realised"], realised[known], rtol=1e-9)
