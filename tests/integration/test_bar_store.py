"""The bar store end to end on a real database: upserts, reads, transactions, assets and runs.

Every test runs on a fresh SQLite file. When ``TEST_POSTGRES_URL`` names a PostgreSQL server
(for example ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, a role that may create
databases) and its driver is installed, every test also runs on a fresh PostgreSQL database.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from config.assets import AssetClass, AssetSpec, load_asset_specs
from config.settings import PROJECT_ROOT
from market.calendars import get_calendar
from storage import (
    UpsertResult,
    bar_gaps,
    bar_summary,
    count_bars,
    finish_ingest_run,
    get_asset,
    list_assets,
    list_ingest_runs,
    open_store,
    read_bars,
    register_asset,
    start_ingest_run,
    upsert_assets,
    upsert_bars,
    watermark,
)
from storage.db import VERSION_TABLE, head_revision

STAMP_1 = pd.Timestamp("2025-01-01 00:00:00.123", tz="UTC")
STAMP_2 = pd.Timestamp("2025-06-01 12:00:00", tz="UTC")


COMPARE_OPTS = {"compare_type": True, "version_table": VERSION_TABLE}


def minute_bars(n: int, start: str = "2024-03-01", seed: int = 1) -> pd.DataFrame:
    """A valid random-walk minute series (canonical frame)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.random(n) * 1e-3)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 1e-3)
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="ts").as_unit("ns")
    volume = rng.lognormal(2.0, 1.0, n)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def ingested_at(engine: Engine, symbol: str = "BTC") -> pd.Series:
    query = text("SELECT ts, ingested_at FROM bars WHERE symbol = :symbol ORDER BY ts")
    with engine.connect() as conn:
        rows = conn.execute(query, {"symbol": symbol}).all()
    return pd.Series([r[1] for r in rows], index=[r[0] for r in rows], dtype="int64")


def snapshot(engine: Engine) -> list[tuple[object, ...]]:
    query = text("SELECT * FROM bars ORDER BY symbol, timeframe, ts")
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query).all()]


def test_upsert_then_read_round_trips_exactly(engine: Engine) -> None:
    frame = minute_bars(3000)
    with engine.begin() as conn:
        result = upsert_bars(conn, "BTC", "1m", frame, "synthetic", ingested_at=STAMP_1)
    assert result == UpsertResult(received=3000, inserted=3000, updated=0, unchanged=0)
    out = read_bars(engine, "BTC", "1m")
    pd.testing.assert_frame_equal(out, frame, check_freq=False)
    assert str(pd.DatetimeIndex(out.index).tz) == "UTC"
    assert out.index.name == "ts"
    assert (ingested_at(engine) == STAMP_1.value // 10**6).all()
    with engine.connect() as conn:
        assert read_bars(conn, "BTC", "1h").empty
        assert read_bars(conn, "ETH", "1m").empty


def test_reupsert_of_identical_frame_writes_nothing(engine: Engine) -> None:
    frame = minute_bars(2000)
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", frame, "synthetic", ingested_at=STAMP_1)
    before = snapshot(engine)
    with engine.begin() as conn:
        again = upsert_bars(conn, "BTC", "1m", frame, "synthetic", ingested_at=STAMP_2)
    assert again == UpsertResult(received=2000, inserted=0, updated=0, unchanged=2000)
    assert snapshot(engine) == before  # ingested_at kept too


def test_changed_values_are_updated_and_counted(engine: Engine) -> None:
    frame = minute_bars(1000)
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", frame, "synthetic", ingested_at=STAMP_1)
    changed = frame.copy()
    changed.loc[changed.index[10:15], "close"] += 0.5
    changed.loc[changed.index[700], "volume"] = 0.0
    extra = minute_bars(50, start=str(frame.index[-1] + pd.Timedelta(minutes=1)), seed=9)
    with engine.begin() as conn:
        result = upsert_bars(conn, "BTC", "1m", pd.concat([changed, extra]), "synthetic", ingested_at=STAMP_2)
    assert result == UpsertResult(received=1050, inserted=50, updated=6, unchanged=994)
    pd.testing.assert_frame_equal(
        read_bars(engine, "BTC", "1m"), pd.concat([changed, extra]), check_freq=False
    )
    stamps = ingested_at(engine)
    new_ms, old_ms = STAMP_2.value // 10**6, STAMP_1.value // 10**6
    assert (stamps == new_ms).sum() == 56
    assert (stamps == old_ms).sum() == 994


def test_a_new_source_alone_counts_as_an_update(engine: Engine) -> None:
    frame = minute_bars(20)
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", frame, "csv")
        assert upsert_bars(conn, "BTC", "1m", frame.iloc[:5], "binance") == UpsertResult(5, 0, 5, 0)
        query = text("SELECT source, COUNT(*) FROM bars GROUP BY source ORDER BY source")
        sources = conn.execute(query).all()
    assert [tuple(r) for r in sources] == [("binance", 5), ("csv", 15)]


def test_an_error_after_an_upsert_rolls_the_whole_ingestion_back(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1000), "synthetic", ingested_at=STAMP_1)
    before = snapshot(engine)
    bigger = minute_bars(1500, seed=5)  # overlaps 1000 stored bars with other values and adds 500
    with pytest.raises(RuntimeError, match="boom"), engine.begin() as conn:
        result = upsert_bars(conn, "BTC", "1m", bigger, "synthetic", ingested_at=STAMP_2)
        assert result.inserted == 500 and result.updated == 1000
        raise RuntimeError("boom")
    assert snapshot(engine) == before


def test_a_database_integrity_error_rolls_the_whole_ingestion_back(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1000), "synthetic", ingested_at=STAMP_1)
    before = snapshot(engine)
    with pytest.raises(IntegrityError, match=r"(?i)not.null"), engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1500, seed=5), "synthetic", ingested_at=STAMP_2)
        upsert_bars(conn, "ETH", "1m", minute_bars(100), "synthetic")
        columns = "symbol, timeframe, ts, open, high, low, close, volume, source, ingested_at"
        null_source = "'ETH', '1m', 1, 1.0, 1.0, 1.0, 1.0, 1.0, NULL, 1"
        conn.execute(text(f"INSERT INTO bars ({columns}) VALUES ({null_source})"))
    assert snapshot(engine) == before


def _abort_insert_at(conn: Connection, ts_ms: int) -> None:
    """Install a test trigger that makes the database reject the insert of bar ``ts_ms``."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            f"CREATE TRIGGER abort_bar BEFORE INSERT ON bars WHEN NEW.ts = {ts_ms} "
            "BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END"
        )
        return
    conn.exec_driver_sql(
        "CREATE FUNCTION abort_bar() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.ts = {ts_ms} THEN RAISE EXCEPTION 'rejected by test trigger' USING ERRCODE = '23514'; "
        "END IF; RETURN NEW; END $$"
    )
    conn.exec_driver_sql(
        "CREATE TRIGGER abort_bar BEFORE INSERT ON bars FOR EACH ROW EXECUTE FUNCTION abort_bar()"
    )


def test_a_database_error_in_the_middle_of_the_batch_rolls_back(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1000), "synthetic", ingested_at=STAMP_1)
    bigger = minute_bars(1500, seed=5)  # rows 0-999 update stored bars, row 1200 is refused
    with engine.begin() as conn:
        _abort_insert_at(conn, int(bigger.index[1200].value // 10**6))
    before = snapshot(engine)
    with pytest.raises(IntegrityError, match="rejected by test trigger"), engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", bigger, "synthetic", ingested_at=STAMP_2)
    assert snapshot(engine) == before
    with engine.begin() as conn:  # the connection is usable again and the rows before 1200 go in
        assert upsert_bars(conn, "BTC", "1m", bigger.iloc[:1200], "synthetic").inserted == 200


def test_a_nan_in_the_frame_fails_before_writing_and_rolls_back(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1000), "synthetic", ingested_at=STAMP_1)
    before = snapshot(engine)
    bad = minute_bars(1000, start="2024-04-01")
    bad.loc[bad.index[500], "volume"] = np.nan
    with pytest.raises(ValueError, match="volume=nan"), engine.begin() as conn:
        upsert_bars(conn, "ETH", "1m", minute_bars(10), "synthetic")
        upsert_bars(conn, "BTC", "1m", bad, "synthetic")
    assert snapshot(engine) == before


def test_read_range_is_start_inclusive_end_exclusive(engine: Engine) -> None:
    frame = minute_bars(100)
    with engine.begin() as conn:
        upsert_bars(conn, "BTC", "1m", frame, "synthetic")
    start, end = frame.index[10], frame.index[20]
    part = read_bars(engine, "BTC", "1m", start=start, end=end)
    pd.testing.assert_frame_equal(part, frame.iloc[10:20], check_freq=False)
    assert part.index[0] == start and part.index[-1] == frame.index[19]
    pd.testing.assert_frame_equal(
        read_bars(engine, "BTC", "1m", start=start), frame.iloc[10:], check_freq=False
    )
    pd.testing.assert_frame_equal(read_bars(engine, "BTC", "1m", end=end), frame.iloc[:20], check_freq=False)
    naive = read_bars(engine, "BTC", "1m", start=start.tz_localize(None), end="2024-03-01 00:20")
    pd.testing.assert_frame_equal(naive, frame.iloc[10:20], check_freq=False)
    new_york = read_bars(engine, "BTC", "1m", start=start.tz_convert("America/New_York"), end=end)
    pd.testing.assert_frame_equal(new_york, frame.iloc[10:20], check_freq=False)
    assert read_bars(engine, "BTC", "1m", start=end, end=start).empty


def test_watermark_summary_and_counts(engine: Engine) -> None:
    btc = minute_bars(300)
    spx = pd.DataFrame(
        {
            "open": [1.0, 2.0],
            "high": [2.0, 3.0],
            "low": [0.5, 1.5],
            "close": [1.5, 2.5],
            "volume": [10.0, 20.0],
        },
        index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"], tz="UTC", name="ts").as_unit("ns"),
    )
    with engine.begin() as conn:
        assert watermark(conn, "BTC", "1m") is None
        upsert_bars(conn, "BTC", "1m", btc, "synthetic")
        upsert_bars(conn, "SPX", "1d", spx, "csv")
        assert watermark(conn, "BTC", "1m") == btc.index[-1]
        assert watermark(conn, "SPX", "1d") == pd.Timestamp("2024-01-03", tz="UTC")
        assert count_bars(conn) == 302
        assert count_bars(conn, symbol="BTC") == 300
        assert count_bars(conn, timeframe="1d") == 2
        assert count_bars(conn, symbol="BTC", timeframe="1d") == 0
        summary = bar_summary(conn)
    assert list(summary.columns) == ["symbol", "timeframe", "first", "last", "rows"]
    assert summary["symbol"].tolist() == ["BTC", "SPX"]
    assert summary["timeframe"].tolist() == ["1m", "1d"]
    assert summary["first"].tolist() == [btc.index[0], pd.Timestamp("2024-01-02", tz="UTC")]
    assert summary["last"].tolist() == [btc.index[-1], pd.Timestamp("2024-01-03", tz="UTC")]
    assert summary["rows"].tolist() == [300, 2]


def test_gaps_on_an_xnys_daily_series(engine: Engine) -> None:
    calendar = get_calendar("XNYS")
    sessions = calendar.sessions(
        pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-29", tz="UTC")
    ).index
    missing = pd.Timestamp("2024-01-10", tz="UTC")
    present = sessions[sessions != missing]
    n = len(present)
    frame = pd.DataFrame(
        {
            "open": np.ones(n),
            "high": np.full(n, 2.0),
            "low": np.zeros(n),
            "close": np.ones(n),
            "volume": np.ones(n),
        },
        index=pd.DatetimeIndex(present, name="ts"),
    )
    with engine.begin() as conn:
        upsert_bars(conn, "SPX", "1d", frame, "csv")
        report = bar_gaps(conn, "SPX", "1d", calendar)
    assert report.expected == len(sessions)  # weekends and MLK day (2024-01-15) are not expected
    assert report.present == n
    assert report.missing == 1
    assert report.off_calendar == 0
    assert [(g.start, g.end, g.bars) for g in report.gaps] == [(missing, missing, 1)]
    with engine.connect() as conn:
        assert bar_gaps(conn, "NONE", "1d", calendar).expected == 0


def test_assets_upsert_get_list_and_register(engine: Engine) -> None:
    specs = load_asset_specs(PROJECT_ROOT / "config" / "assets.yaml")
    with engine.begin() as conn:
        upsert_assets(conn, specs)
        upsert_assets(conn, specs)  # idempotent
        assert [a.symbol for a in list_assets(conn)] == sorted(s.symbol for s in specs)
        assert get_asset(conn, specs[0].symbol) == specs[0]
        assert get_asset(conn, specs[0].symbol.lower()) == specs[0]
        assert get_asset(conn, "NOPE") is None
        created = conn.execute(
            text("SELECT symbol, created_at, updated_at FROM assets ORDER BY symbol")
        ).all()

    btc = AssetSpec(
        symbol="btcusdt",
        asset_class=AssetClass.CRYPTO,
        timeframe="1m",
        default_source="binance",
        enabled=False,
    )
    with engine.begin() as conn:
        register_asset(conn, btc)
        register_asset(conn, btc)  # the same asset again (another process at once): nothing changes
        with pytest.raises(ValueError, match="already registered with other fields"):
            register_asset(conn, btc.model_copy(update={"timeframe": "1h"}))
        assert get_asset(conn, "BTCUSDT") == btc
        assert get_asset(conn, "BTCUSDT").calendar == "24/7"  # type: ignore[union-attr]
        assert "BTCUSDT" not in [a.symbol for a in list_assets(conn, enabled_only=True)]
        assert "BTCUSDT" in [a.symbol for a in list_assets(conn)]

    edited = specs[0].model_copy(update={"description": "edited", "source_options": {"path": "other.csv"}})
    with engine.begin() as conn:
        upsert_assets(conn, [edited])
        assert get_asset(conn, edited.symbol) == edited
        assert get_asset(conn, "BTCUSDT") == btc  # not in the YAML: kept
        after = {
            r[0]: (r[1], r[2])
            for r in conn.execute(text("SELECT symbol, created_at, updated_at FROM assets"))
        }
    for symbol, created_at, updated_at in created:
        assert after[symbol][0] == created_at
        assert (
            (after[symbol][1] >= updated_at) if symbol == edited.symbol else (after[symbol][1] == updated_at)
        )
    with pytest.raises(ValueError, match="listed twice"), engine.begin() as conn:
        upsert_assets(conn, [specs[0], specs[0]])


def test_ingest_run_lifecycle(engine: Engine) -> None:
    frame = minute_bars(200)
    with engine.begin() as conn:
        ok_id = start_ingest_run(
            conn,
            batch_id="batch-1",
            symbol="BTC",
            timeframe="1m",
            source="synthetic",
            requested={"start": frame.index[0], "end": "2024-03-02", "options": {"seed": 1}},
        )
        bad_id = start_ingest_run(
            conn, batch_id="batch-1", symbol="ETH", timeframe="1m", source="binance", requested={}
        )
        other_id = start_ingest_run(
            conn, batch_id="batch-2", symbol="BTC", timeframe="1d", source="csv", requested={}
        )
        (running,) = [r for r in list_ingest_runs(conn, "batch-1") if r.id == ok_id]
        assert running.status == "running" and running.finished_at is None and running.rows_received is None
    with engine.begin() as conn:
        result = upsert_bars(conn, "BTC", "1m", frame, "synthetic")
    with engine.begin() as conn:
        finish_ingest_run(
            conn, ok_id, status="success", result=result, first_ts=frame.index[0], last_ts=frame.index[-1]
        )
        finish_ingest_run(conn, bad_id, status="failed", error="Unavailable: binance answered 503")
        with pytest.raises(ValueError, match="already finished"):
            finish_ingest_run(conn, ok_id, status="failed")
        with pytest.raises(ValueError, match="final status"):
            finish_ingest_run(conn, other_id, status="running")
        with pytest.raises(LookupError, match="no ingest run"):
            finish_ingest_run(conn, 999, status="success")
        runs = list_ingest_runs(conn, batch_id="batch-1")
        everything = list_ingest_runs(conn)
    assert [r.id for r in runs] == [ok_id, bad_id]
    assert [r.id for r in everything] == [ok_id, bad_id, other_id]
    ok, bad = runs
    assert ok.status == "success" and ok.symbol == "BTC" and ok.source == "synthetic"
    assert (ok.rows_received, ok.rows_inserted, ok.rows_updated, ok.rows_unchanged) == (200, 200, 0, 0)
    assert ok.first_ts == frame.index[0] and ok.last_ts == frame.index[-1]
    assert ok.requested == {"start": frame.index[0].isoformat(), "end": "2024-03-02", "options": {"seed": 1}}
    assert ok.started_at.tz is not None and ok.finished_at is not None and ok.finished_at >= ok.started_at
    assert bad.status == "failed" and bad.error == "Unavailable: binance answered 503"
    assert bad.rows_received is None and bad.first_ts is None
    assert everything[2].status == "running"


def test_alembic_command_line_uses_the_ini_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli' / 'fks.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), "-x", f"url={url}"]
    done = subprocess.run(
        [*alembic, "upgrade", "head"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    current = subprocess.run([*alembic, "current"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert f"{head_revision()} (head)" in current.stdout, current.stderr
    eng = open_store(url)  # already at head: nothing to do
    try:
        with eng.connect() as conn:
            assert count_bars(conn) == 0
    finally:
        eng.dispose()


def test_migrated_schema_matches_the_models_and_migrate_reruns(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage import migrate
    from storage.schema import Base

    migrate(engine)  # already at head: a no-op
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts=COMPARE_OPTS),
            Base.metadata,
        )
    assert diff == []
