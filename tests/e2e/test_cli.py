"""The `fks` command as a user runs it: a subprocess with FKS_DB_URL pointing at a temporary database."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.trade_support import replay_the_served_champion

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

FKS = str(Path(sys.executable).with_name("fks"))


def _fks(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "FKS_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "mlruns" / "artifacts"),
        "COLUMNS": "200",
    }
    return subprocess.run([FKS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _bar_count(tmp_path: Path) -> int:
    db = tmp_path / "cli.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return conn.execute("SELECT COUNT(*) FROM bars").fetchone()[0] if "bars" in tables else 0


def test_csv_ingest_then_data_list(tmp_path: Path, samples_dir: Path) -> None:
    done = _fks(
        tmp_path,
        "ingest",
        "--source",
        "csv",
        "--path",
        str(samples_dir / "sp500_daily.csv"),
        "--symbol",
        "SPY500",
        "--timeframe",
        "1d",
        "--asset-class",
        "index",
    )
    assert done.returncode == 0, done.stderr
    assert "SPY500" in done.stdout and "5031" in done.stdout
    listed = _fks(tmp_path, "data", "list")
    assert listed.returncode == 0, listed.stderr
    assert "SPY500" in listed.stdout and "1999-01-04" in listed.stdout and "2018-12-31" in listed.stdout
    assert _fks(tmp_path, "ingest", "--symbols", "EURUSD").returncode == 0  # the shipped hourly FX sample
    listed = _fks(tmp_path, "data", "list")
    as_json = _fks(tmp_path, "data", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    series = {s["symbol"]: s for s in json.loads(as_json.stdout)}
    spy, eur = series["SPY500"], series["EURUSD"]
    assert (spy["timeframe"], spy["rows"], spy["gaps"], spy["longest_gap"]) == ("1d", 5031, 0, None)
    assert spy["first"].startswith("1999-01-04") and spy["last"].startswith("2018-12-31")
    assert (eur["timeframe"], eur["rows"], eur["missing_bars"], eur["gaps"]) == ("1h", 6225, 15, 2)
    assert eur["longest_gap"] == {"bars": 14, "start": "2017-12-25T08:00:00+00:00"}
    assert eur["cross_check"] is None
    rows = {
        cells[1]: cells[1:-1]
        for line in listed.stdout.splitlines()
        if len(cells := [c.strip() for c in line.split("│")]) > 2
    }  # the table shows the same values
    assert rows["EURUSD"] == ["EURUSD", "1h", "2017-01-01 22:00", "2017-12-29 21:00", "6225", "15", "2",
                              "14 bars from 2017-12-25 08:00", "-"]  # fmt: skip
    assert rows["SPY500"][4:] == ["5031", str(spy["missing_bars"]), "0", "-", "-"]


def test_trade_without_its_service_exits_5_with_one_message(tmp_path: Path, samples_dir: Path) -> None:
    """No service where FKS_SERVICE_URL points, and no Prefect server (a temporary one, as for a
    new user): exit 5 with the hint to start it, no traceback from Prefect's copy of the failure
    and no complaint from Prefect's log shipping after its temporary server stopped."""
    from tests.serving_support import free_port

    spx = ["--path", str(samples_dir / "sp500_daily.csv"), "--symbol", "SPX", "--asset-class", "index"]
    assert _fks(tmp_path, "ingest", "--source", "csv", *spx, "--timeframe", "1d").returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        FKS_DB_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        FKS_DATA_DIR=str(tmp_path / "data"),
        FKS_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
        FKS_SERVICE_API_KEY="fks_not-a-key",
    )
    args = ["trade", "--paper", "--replay", "2016-01-04", "2016-02-01", "--symbols", "SPX"]
    done = subprocess.run([FKS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "cannot connect to the service" in done.stderr and "fks serve" in done.stderr
    assert "Traceback" not in done.stderr and "Error logging to API" not in done.stderr, done.stderr
    assert "fks_not-a-key" not in done.stdout + done.stderr


def test_backfill_of_offline_series_says_why_nothing_is_fetched(tmp_path: Path, samples_dir: Path) -> None:
    spx = ["--path", str(samples_dir / "sp500_daily.csv"), "--symbol", "SPX", "--asset-class", "index"]
    assert _fks(tmp_path, "ingest", "--source", "csv", *spx, "--timeframe", "1d").returncode == 0
    done = _fks(tmp_path, "backfill", "--gaps")
    assert done.returncode == 0, done.stderr
    assert "Nothing to backfill" in done.stdout and "provider_symbols" in done.stdout, done.stdout


def test_ambiguous_dates_exit_2_and_ask_for_date_format(tmp_path: Path) -> None:
    bad = tmp_path / "ambiguous.csv"
    bad.write_text("Date,Open,High,Low,Close,Volume\n01/02/2003,1,2,0.5,1.5,10\n02/03/2003,1,2,0.5,1.5,10\n")
    done = _fks(
        tmp_path, "ingest", "--source", "csv", "--path", str(bad), "--symbol", "AMB", "--timeframe", "1d"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--date-format" in done.stderr and "ambiguous.csv" in done.stderr
    assert _bar_count(tmp_path) == 0


def test_missing_column_and_bad_usage_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "noclose.csv"
    bad.write_text("Date,Open,High,Low,Volume\n2024-01-02,1,2,0.5,10\n")
    done = _fks(
        tmp_path, "ingest", "--source", "csv", "--path", str(bad), "--symbol", "NC", "--timeframe", "1d"
    )
    assert done.returncode == 2 and "close" in done.stderr.lower() and "noclose.csv" in done.stderr
    assert _fks(tmp_path, "ingest", "--timeframe", "5m").returncode == 2
    moon = _fks(
        tmp_path, "ingest", "--source", "csv", "--path", str(bad), "--symbol", "NC", "--calendar", "MOON"
    )
    assert moon.returncode == 2 and "unknown calendar 'MOON'" in moon.stderr
    assert _fks(tmp_path, "ingest", "--source", "csv", "--symbol", "X").returncode == 2  # no --path
    assert _bar_count(tmp_path) == 0


def test_synthetic_ingest_and_contradicting_asset_class(tmp_path: Path) -> None:
    done = _fks(
        tmp_path,
        "ingest",
        "--source",
        "synthetic",
        "--symbols",
        "S1,S2",
        "--timeframe",
        "1h",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-01",
        "--seed",
        "3",
    )
    assert done.returncode == 0, done.stderr
    assert _bar_count(tmp_path) > 0
    clash = _fks(
        tmp_path,
        "ingest",
        "--source",
        "synthetic",
        "--symbols",
        "S1",
        "--timeframe",
        "1h",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-01",
        "--asset-class",
        "crypto",
    )
    assert clash.returncode == 2 and "registered as equity" in clash.stderr


def test_pipeline_prints_a_summary(tmp_path: Path) -> None:
    done = _fks(tmp_path, "pipeline")
    assert done.returncode == 0, done.stderr
    for text in (
        "SPX",
        "GOOGL",
        "EURUSD",
        "5031",
        "2335",
        "6225",
        "fks data list",
        "Features",
        "Data Docs:",
        "Forecaster SPX 1d",
        "Tearsheet:",
        "Backtest fks-forecaster v1",
        "hist_gb",
        "ridge",
        "@challenger",
        "mlflow ui",
        "Allocator PPO on",  # the allocator's stage on the labelled synthetic universe
        "(synthetic",
        "equal_weight",
        "Registered fks-allocator version 1",
    ):
        assert text in done.stdout
    shown = re.search(r"Features: (\S+)", done.stdout)
    assert shown is not None, done.stdout
    features = Path(shown.group(1).removeprefix("file://"))  # where the builds are, as printed
    assert features.is_relative_to(tmp_path / "data") and any(features.rglob("build-*.parquet"))
    _assert_one_answer_per_question(done.stdout)
    rebuilt = _fks(tmp_path, "features", "--symbols", "SPX", "--set", "default")
    assert rebuilt.returncode == 0 and "cached" in rebuilt.stdout, rebuilt.stderr
    unknown = _fks(tmp_path, "features", "--set", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def _row(stdout: str, metric: str) -> list[str]:
    """The cells of one metric's row of the backtest table."""
    line = next(x for x in stdout.splitlines() if re.match(rf"^[│|] {metric} +[│|]", x))
    return [c.strip() for c in re.split(r"[│|]", line)[2:-1]]


def _assert_one_answer_per_question(stdout: str) -> None:
    """The summary's figures: training's strategy line is the backtest table's model column (the
    registered pyfunc on min_bars raw bars gives training's test forecasts), and the gate's decision
    on SPX is the one these figures imply."""
    line = re.search(
        r"long_flat net of costs: total return (-?[\d.]+)%, Sharpe (-?[\d.]+), max drawdown (-?[\d.]+)%, "
        r"(\d+) trades",
        stdout,
    )
    assert line, stdout
    model_col = 0
    assert _row(stdout, "total return")[model_col] == f"{line.group(1)}%"
    assert _row(stdout, "Sharpe")[model_col] == line.group(2)
    assert _row(stdout, "max drawdown")[model_col] == f"{line.group(3)}%"
    assert _row(stdout, "trades")[model_col] == line.group(4)
    # buy and hold over the out-of-sample window (starts after min_history + lookback bars)
    assert "SPX 1d, 2016-04-01 .. 2018-12-28, net of costs" in stdout
    assert _row(stdout, "total return")[1] == "19.9%" and _row(stdout, "Sharpe")[1] == "0.59"
    # the gate: no champion yet, the seeded LSTM does not beat buy and hold on Sharpe
    assert re.search(r"refused: fks-forecaster v1 vs no champion yet", stdout), stdout
    assert "does not beat baseline 'buy and hold'" in stdout
    sharpe = float(line.group(2))
    assert sharpe < 0.59


def test_quarantined_rows_exit_3_then_list_release_drop_and_validate(
    tmp_path: Path, samples_dir: Path
) -> None:
    lines = (samples_dir / "googl_daily.csv").read_text().splitlines()
    negative = lines[9].split(",")
    negative[4] = "-5"  # a negative close on line 10
    lines[9] = ",".join(negative)
    inverted = lines[19].split(",")
    inverted[2], inverted[3] = inverted[3], inverted[2]  # high below low on line 20
    lines[19] = ",".join(inverted)
    bad = tmp_path / "bad_rows.csv"
    bad.write_text("\n".join(lines) + "\n")
    done = _fks(
        tmp_path, "ingest", "--source", "csv", "--path", str(bad), "--symbol", "BAD", "--timeframe", "1d"
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "2 row(s) quarantined" in done.stderr and "prices_positive" in done.stderr
    assert "high_ge_low" in done.stderr and "Data Docs:" in done.stdout
    assert _bar_count(tmp_path) == 2333  # every good row stored
    listed = _fks(tmp_path, "quarantine", "list")
    assert listed.returncode == 0 and "prices_positive" in listed.stdout
    ids = re.findall(r"(\d+)\s*\S\s*BAD", listed.stdout)
    assert len(ids) == 2, listed.stdout
    released = _fks(tmp_path, "quarantine", "release", ids[0], "--note", "vendor confirmed")
    assert released.returncode == 0 and "is now stored" in released.stdout, released.stderr
    dropped = _fks(tmp_path, "quarantine", "drop", ids[1], "--note", "bad print")
    assert dropped.returncode == 0, dropped.stderr
    again = _fks(tmp_path, "quarantine", "drop", ids[1])
    assert again.returncode == 2 and "already decided" in again.stderr
    assert _fks(tmp_path, "quarantine", "list").stdout.strip() == "No quarantined rows."
    assert _bar_count(tmp_path) == 2334
    revalidated = _fks(tmp_path, "validate", "--symbols", "BAD")
    assert revalidated.returncode == 0, revalidated.stderr
    assert "2334" in revalidated.stdout


def test_a_big_real_move_is_stored_and_listed_by_validate_warnings(tmp_path: Path, samples_dir: Path) -> None:
    lines = (samples_dir / "googl_daily.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    for i in range(1800, len(rows)):  # a -40 % gap that stays (profit warning), from 2016-07-29 on
        cells = rows[i].split(",")
        cells[1:6] = [f"{float(x) * 0.6:.6f}" for x in cells[1:6]]
        rows[i] = ",".join(cells)
    gap = tmp_path / "gap.csv"
    gap.write_text("\n".join([header, *rows]) + "\n")
    args = ("--source", "csv", "--path", str(gap), "--symbol", "GAP", "--timeframe", "1d")
    done = _fks(tmp_path, "ingest", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _bar_count(tmp_path) == 2335  # nothing quarantined
    listed = _fks(tmp_path, "validate", "--warnings")
    assert listed.returncode == 0, listed.stderr
    day = rows[1800].split(",")[0]
    assert "GAP" in listed.stdout and day in listed.stdout and "return_in_bound" in listed.stdout
    assert "1 bars kept and flagged" in listed.stdout


def test_train_backtest_promote_and_rollback_exit_codes(tmp_path: Path) -> None:
    assert _fks(tmp_path, "ingest", "--symbols", "GOOGL").returncode == 0
    trained = _fks(
        tmp_path,
        "train",
        "forecaster",
        "--symbol",
        "GOOGL",
        "--epochs",
        "1",
        "--folds",
        "1",
        "--lookback",
        "10",
    )
    assert trained.returncode == 0, trained.stderr
    assert "long_flat net of costs" in trained.stdout and "@challenger" in trained.stdout
    backtested = _fks(tmp_path, "backtest", "--model", "fks-forecaster/1", "--windows", "2")
    assert backtested.returncode == 0 and "Tearsheet:" in backtested.stdout, backtested.stderr
    assert _fks(tmp_path, "backtest", "--model", "fks-forecaster@nope").returncode == 2
    refused = _fks(tmp_path, "promote", "--min-trades", "1000000")
    assert refused.returncode == 4 and "refused" in refused.stdout and "trades" in refused.stdout
    forced = _fks(tmp_path, "promote", "--min-trades", "1000000", "--force")
    assert forced.returncode == 0 and "forced" in forced.stdout, forced.stderr
    nothing = _fks(tmp_path, "rollback")
    assert nothing.returncode == 2 and "previous-champion" in nothing.stderr
    # the champion, served, paper-traded over its test window: the backtest's equity (one training for both)
    replay_the_served_champion(tmp_path)
