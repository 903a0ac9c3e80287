"""`fks lake import` screens every series with the ``bars`` suite, as ingestion does.

A lake can be edited by hand or written by another tool: its bad bars must go to quarantine, never
to ``bars``; a symbol that is not a registered asset cannot be validated and is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from flows.cli.lake import lake_app
from flows.lake import lake_export, lake_import
from market.bars import canonical_bars
from storage import list_quarantine, read_bars, upsert_bars
from storage.lake import partition_key
from tasks.store import store_for

pytestmark = pytest.mark.usefixtures("prefect_server")

START = "2024-01-01"
N = 300  # hourly bars: one partition (2024-01)
HIGH_BELOW_LOW = 100
SPIKE = 200


def _bars(periods: int, seed: int) -> pd.DataFrame:
    """A seeded random walk of hourly bars (24/7: every hour is on the crypto calendar)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(START, periods=periods, freq="1h", tz="UTC", name="ts")
    close = 40_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.003, periods)))
    open_ = np.concatenate([[40_000.0], close[:-1]])
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1.0, 50.0, periods).round(3),
        },
        index=index,
    )
    return canonical_bars(frame)


def _with_db(settings: Settings, tmp_path: Path, name: str) -> Settings:
    return settings.model_copy(update={"db_url": f"sqlite:///{tmp_path / name}"})


@pytest.fixture
def source(settings: Settings, tmp_path: Path) -> Settings:
    """Settings of the FKS that fills the lake (a local folder) with BTC-USD 1h bars from 'binance'."""
    made = settings.model_copy(update={"lake_uri": f"file://{tmp_path / 'lake'}"})
    with store_for(made).begin() as conn:
        upsert_bars(conn, "BTC-USD", "1h", _bars(N, seed=1), source="binance")
    return made


def _edit_partition(path: Path) -> None:
    """Edit a lake file by hand: one bar with high < low, one 50x price spike."""
    frame = pq.read_table(path).to_pandas()
    frame.loc[HIGH_BELOW_LOW, "high"] = frame.loc[HIGH_BELOW_LOW, "low"] * 0.98
    for column in ("open", "high", "low", "close"):
        frame.loc[SPIKE, column] *= 50.0
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    sql = "SELECT symbol, timeframe, ts, open, high, low, close, volume, source FROM bars ORDER BY 1, 2, 3"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_a_hand_edited_partition_imports_good_rows_and_quarantines_bad_ones(
    source: Settings, settings: Settings, tmp_path: Path
) -> None:
    lake_export(LakeExportConfig(), source)
    _edit_partition(tmp_path / "lake" / partition_key("BTC-USD", "1h", "2024-01"))
    bad = pd.DatetimeIndex([_bars(N, 1).index[HIGH_BELOW_LOW], _bars(N, 1).index[SPIKE]])

    target = _with_db(source, tmp_path, "target.db")
    summary = lake_import(LakeImportConfig(), target)
    [outcome] = summary.outcomes
    assert summary.refused == []
    assert (outcome.symbol, outcome.rows, outcome.inserted, outcome.quarantined) == ("BTC-USD", N, N - 2, 2)
    assert outcome.quarantine_reasons["high_ge_low"] == 1
    assert outcome.quarantine_reasons["no_spike"] == 1  # x50 and back: a bad tick
    assert outcome.quarantine_reasons["return_ceiling"] == 1
    assert outcome.docs_path and Path(outcome.docs_path).exists()

    engine = store_for(target)
    stored = read_bars(engine, "BTC-USD", "1h")
    expected = _bars(N, 1).drop(index=bad)
    pd.testing.assert_frame_equal(stored, expected, check_freq=False)
    assert {r[-1] for r in _rows(engine)} == {"binance"}  # every bar keeps its source from the lake
    with engine.connect() as conn:
        entries = list_quarantine(conn, symbol="BTC-USD", timeframe="1h")
        triggers = conn.execute(text('SELECT DISTINCT "trigger" FROM validation_results')).scalars().all()
    assert sorted(e.ts for e in entries) == list(bad)
    assert {e.source for e in entries} == {"binance"} and all(e.row["source"] == "binance" for e in entries)
    assert triggers == ["ingest"]

    before = _rows(engine)
    again = lake_import(LakeImportConfig(), target)
    [second] = again.outcomes
    assert (second.inserted, second.updated, second.unchanged, second.quarantined) == (0, 0, N - 2, 2)
    assert _rows(engine) == before
    with engine.connect() as conn:
        assert len(list_quarantine(conn, status=None, symbol="BTC-USD")) == 2  # not quarantined twice


def test_an_unregistered_symbol_is_refused_while_registered_ones_import(
    source: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store_for(source).begin() as conn:
        upsert_bars(conn, "ACME", "1h", _bars(48, seed=2), source="vendor")
    lake_export(LakeExportConfig(), source)

    target = _with_db(source, tmp_path, "target.db")
    summary = lake_import(LakeImportConfig(), target)
    assert [(o.symbol, o.inserted) for o in summary.outcomes] == [("BTC-USD", N)]
    [refusal] = summary.refused
    assert (refusal.symbol, refusal.timeframe) == ("ACME", "1h")
    assert "not a registered asset" in refusal.error
    assert "config/assets.yaml" in refusal.error and "FKS_ASSETS_FILE" in refusal.error
    assert "--source csv" in refusal.error
    assert read_bars(store_for(target), "ACME", "1h").empty

    monkeypatch.setenv("FKS_DB_URL", target.db_url)
    monkeypatch.setenv("FKS_DATA_DIR", str(target.data_dir))
    monkeypatch.setenv("FKS_LAKE_URI", target.lake_uri)
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.add_typer(lake_app, name="lake")
    runner = CliRunner()
    refused = runner.invoke(app, ["lake", "import"])
    assert refused.exit_code == 2, refused.output
    assert "BTC-USD 1h" in refused.output and "ACME 1h" in refused.output
    assert "config/assets.yaml" in refused.output

    registry = tmp_path / "assets.yaml"
    registry.write_text(
        "assets:\n  - {symbol: ACME, asset_class: crypto, timeframe: 1h, default_source: csv}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("FKS_ASSETS_FILE", str(registry))
    done = runner.invoke(app, ["lake", "import", "--symbols", "ACME"])
    assert done.exit_code == 0, done.output
    assert read_bars(store_for(target), "ACME", "1h").equals(read_bars(store_for(source), "ACME", "1h"))


def test_cli_exits_3_when_rows_were_quarantined(
    source: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake_export(LakeExportConfig(), source)
    _edit_partition(tmp_path / "lake" / partition_key("BTC-USD", "1h", "2024-01"))
    target = _with_db(source, tmp_path, "target.db")
    monkeypatch.setenv("FKS_DB_URL", target.db_url)
    monkeypatch.setenv("FKS_DATA_DIR", str(target.data_dir))
    monkeypatch.setenv("FKS_LAKE_URI", target.lake_uri)
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.add_typer(lake_app, name="lake")
    result = CliRunner().invoke(app, ["lake", "import"])
    assert result.exit_code == 3, result.output
    assert "quarantined" in result.output and "Data Docs:" in result.output
    assert "fks quarantine list" in result.output
