"""The ingest flow on a real SQLite file under a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import text

from config.flows import IngestConfig, InputError
from config.settings import Settings
from flows._flowruns import COMMAND_TAG, parse_process_tag
from flows.ingest import ingest
from ingestion.ingest import IngestFailed
from storage import count_bars, get_asset, list_ingest_runs, list_quarantine, list_validations, read_bars
from tasks.store import store_for

pytestmark = pytest.mark.usefixtures("prefect_server")

SAMPLE_ROWS = {"SPX": 5031, "GOOGL": 2335, "EURUSD": 6225}


def _bars_table(settings: Settings) -> pd.DataFrame:
    with store_for(settings).connect() as conn:
        return pd.DataFrame(
            conn.execute(text("SELECT * FROM bars ORDER BY symbol, timeframe, ts")).fetchall()
        )


def test_samples_load_with_exact_counts_then_reingest_changes_nothing(settings: Settings) -> None:
    summary = ingest(IngestConfig(), settings)
    by_symbol = {o.symbol: o for o in summary.outcomes}
    assert {s: by_symbol[s].inserted for s in SAMPLE_ROWS} == SAMPLE_ROWS
    assert by_symbol["SPX"].first_ts == pd.Timestamp("1999-01-04", tz="UTC")
    assert by_symbol["EURUSD"].last_ts == pd.Timestamp("2017-12-29 21:00", tz="UTC")
    assert by_symbol["SPX"].missing_bars == 0  # weekends and NYSE holidays are not gaps
    assert by_symbol["EURUSD"].longest_gap.startswith("14 bars from 2017-12-25")
    engine = store_for(settings)
    with engine.connect() as conn:
        assert count_bars(conn) == sum(SAMPLE_ROWS.values())
        assert get_asset(conn, "EURUSD").calendar == "24/5"  # type: ignore[union-attr]
        runs = list_ingest_runs(conn, batch_id=summary.batch_id)
    assert {r.status for r in runs} == {"success"} and len(runs) == 3
    before = _bars_table(settings)

    again = ingest(IngestConfig(), settings)  # resumes from the watermark
    assert all(o.inserted == 0 and o.updated == 0 for o in again.outcomes)
    assert all(o.received == 1 and o.unchanged == 1 for o in again.outcomes)
    full = ingest(IngestConfig(full=True), settings)
    assert {o.symbol: o.unchanged for o in full.outcomes} == SAMPLE_ROWS
    pd.testing.assert_frame_equal(_bars_table(settings), before)  # ingested_at included


def _write_bad_copy(samples_dir: Path, tmp_path: Path, row: int, value: str) -> Path:
    lines = (samples_dir / "googl_daily.csv").read_text().splitlines()
    fields = lines[row - 1].split(",")
    fields[4] = value  # Close
    lines[row - 1] = ",".join(fields)
    bad = tmp_path / "googl_bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_unreadable_file_writes_nothing_and_records_the_failed_run(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    ingest(IngestConfig(symbols=["SPX"]), settings)
    before = _bars_table(settings)
    lines = (samples_dir / "googl_daily.csv").read_text().splitlines()
    bad = tmp_path / "no_close.csv"
    bad.write_text("\n".join(",".join(f for i, f in enumerate(line.split(",")) if i != 4) for line in lines))
    config = IngestConfig(source="csv", path=bad, symbols=["NEWCO"], timeframe="1d")
    with pytest.raises(IngestFailed) as info:
        ingest(config, settings)
    assert info.value.input_error
    assert "no_close.csv" in str(info.value) and "close" in str(info.value).lower()
    pd.testing.assert_frame_equal(_bars_table(settings), before)
    with store_for(settings).connect() as conn:
        assert get_asset(conn, "NEWCO") is None  # not registered either
        assert list_quarantine(conn, status=None) == []
        runs = list_ingest_runs(conn, batch_id=config.batch_id)
    assert [r.status for r in runs] == ["failed"] and "no_close.csv" in (runs[0].error or "")


def test_bad_rows_are_quarantined_and_every_good_row_is_stored(
    settings: Settings, samples_dir: Path, tmp_path: Path
) -> None:
    bad = _write_bad_copy(samples_dir, tmp_path, row=1200, value="n/a")
    lines = bad.read_text().splitlines()
    fields = lines[1500 - 1].split(",")
    fields[3] = str(float(fields[2]) + 50)  # Low far above High on line 1500
    lines[1500 - 1] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    config = IngestConfig(source="csv", path=bad, symbols=["NEWCO"], timeframe="1d")
    summary = ingest(config, settings)
    outcome = summary.outcomes[0]
    assert (outcome.inserted, outcome.quarantined) == (2333, 2)
    assert outcome.docs_path.endswith(".html") and Path(outcome.docs_path).exists()
    with store_for(settings).connect() as conn:
        held = list_quarantine(conn, symbol="NEWCO")
        stored = read_bars(conn, "NEWCO", "1d")
        validations = list_validations(conn, batch_id=config.batch_id)
    assert held[0].failed_expectations == ["parseable_row"]
    assert held[0].row["line"] == 1200 and "n/a" in held[0].row["text"]
    assert held[1].ts == pd.Timestamp(lines[1500 - 1].split(",")[0], tz="UTC")
    assert held[1].ts not in stored.index and len(stored) == 2333
    assert any("low" in e for e in held[1].failed_expectations)
    assert validations[0].rows_failed == 2 and not validations[0].success
    again = ingest(
        IngestConfig(source="csv", path=bad, symbols=["NEWCO"], timeframe="1d", full=True), settings
    )
    assert again.outcomes[0].inserted == 0
    with store_for(settings).connect() as conn:
        assert len(list_quarantine(conn, symbol="NEWCO")) == 2  # re-ingest quarantines nothing twice


def test_csv_of_a_new_symbol_registers_it_and_later_flags_must_agree(
    settings: Settings, samples_dir: Path
) -> None:
    path = samples_dir / "googl_daily.csv"
    config = IngestConfig(source="csv", path=path, symbols=["alpha"], timeframe="1d", asset_class="equity")
    summary = ingest(config, settings)
    assert summary.outcomes[0].inserted == 2335
    with store_for(settings).connect() as conn:
        asset = get_asset(conn, "ALPHA")
        assert asset is not None and asset.calendar == "XNYS" and asset.default_source == "csv"
        assert read_bars(conn, "ALPHA", "1d").equals(read_bars(conn, "ALPHA", "1d"))
    with pytest.raises(InputError, match="registered as equity, not fx"):
        ingest(
            IngestConfig(source="csv", path=path, symbols=["ALPHA"], timeframe="1d", asset_class="fx"),
            settings,
        )
    with pytest.raises(InputError, match=r"not registered.*NOPE"):
        ingest(IngestConfig(symbols=["NOPE"]), settings)


def test_synthetic_market_resumes_from_the_watermark_with_identical_history(settings: Settings) -> None:
    common = {
        "source": "synthetic",
        "symbols": ["AAA", "BBB"],
        "timeframe": "1m",
        "asset_class": "crypto",
        "start": "2024-01-01",
        "seed": 11,
    }
    first = ingest(IngestConfig(**common, end="2024-01-03"), settings)
    assert [o.inserted for o in first.outcomes] == [2 * 1440, 2 * 1440]
    with store_for(settings).connect() as conn:
        early = read_bars(conn, "AAA", "1m")
    second = ingest(IngestConfig(**common, end="2024-01-04"), settings)
    assert [(o.inserted, o.updated, o.unchanged) for o in second.outcomes] == [(1440, 0, 1), (1440, 0, 1)]
    with store_for(settings).connect() as conn:
        late = read_bars(conn, "AAA", "1m")
        assert get_asset(conn, "BBB").calendar == "24/7"  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(late.iloc[: len(early)], early)
    assert second.outcomes[0].missing_bars == 0


def test_python_m_flows_ingest_runs_the_flow_from_its_flags_and_refuses_bad_ones_with_nothing_written(
    tmp_path: Path,
) -> None:
    """``python -m flows.ingest`` as a user runs it (README "Project layout"): the config from the
    flags, the summary printed as JSON, the bars stored; an unknown symbol exits 2 with one line
    that says how to fix it, and writes nothing."""
    root = Path(__file__).resolve().parents[2]
    db = tmp_path / "module.db"
    env = {**os.environ, "PYTHONPATH": str(root), "FKS_DB_URL": f"sqlite:///{db}",
           "FKS_DATA_DIR": str(tmp_path / "data")}  # fmt: skip

    def module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flows.ingest", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    before = {r.id for r in _ingest_runs()}

    flags = ["--source", "synthetic", "--symbols", "AAA,BBB", "--timeframe", "1d", "--asset-class",
             "crypto", "--start", "2024-01-01", "--end", "2024-02-01"]  # fmt: skip
    done = module(*flags)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [(o["symbol"], o["inserted"]) for o in summary["outcomes"]] == [("AAA", 31), ("BBB", 31)]
    settings = Settings(db_url=f"sqlite:///{db}", data_dir=tmp_path / "data")
    engine = store_for(settings)
    with engine.connect() as conn:
        assert count_bars(conn) == 62
    # its flow run is tagged as an fks command's, with its process (found again if it is killed)
    (run,) = [r for r in _ingest_runs() if r.id not in before]
    assert COMMAND_TAG in run.tags, run.tags
    assert any(parse_process_tag(t) for t in run.tags), run.tags
    # bad input the flow itself finds (flags and configs are tests/unit/test_flow_main.py's)
    refused = module("--symbols", "NOPE")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: not registered: NOPE") and "config/assets.yaml" in last, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr  # said once, without Prefect's copy
    assert refused.stdout == ""
    with engine.connect() as conn:
        assert count_bars(conn) == 62
    engine.dispose()


def _ingest_runs() -> list[Any]:
    """The 50 newest flow runs of the ``ingest`` flow on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return list(
            client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest"])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=50,
            )
        )
