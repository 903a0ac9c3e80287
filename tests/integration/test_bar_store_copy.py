"""The PostgreSQL fast path of ``upsert_bars`` (binary ``COPY``) against the SQLite path.

PostgreSQL writes bars by ``COPY``: straight into ``bars`` when nothing of the span is stored,
otherwise into a temporary staging table merged by one ``INSERT ... SELECT ... ON CONFLICT``.
These tests hold it to the SQLite path (``executemany`` upsert): the same stored rows (to the bit,
``ingested_at`` included) and the same :class:`UpsertResult` counts, step by step; and nothing
half-written when a transaction fails. They need ``TEST_POSTGRES_URL`` (a role that may create
databases, as for the other PostgreSQL twins) and skip without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

import storage.bars as bars_module
from storage import UpsertResult, open_store, read_bars, upsert_bars
from storage.db import MIGRATIONS_DIR

STAMP_1 = pd.Timestamp("2025-01-01 00:00:00.123", tz="UTC")
STAMP_2 = pd.Timestamp("2025-03-01 08:00:00", tz="UTC")
STAMP_3 = pd.Timestamp("2025-06-01 12:00:00.5", tz="UTC")
STAMP_4 = pd.Timestamp("2025-09-01 00:00:00", tz="UTC")


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


def snapshot(engine: Engine) -> list[tuple[object, ...]]:
    query = text(
        "SELECT symbol, timeframe, ts, open, high, low, close, volume, source, ingested_at "
        "FROM bars ORDER BY symbol, timeframe, ts"
    )
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query).all()]


def stamps(engine: Engine, symbol: str = "BTC") -> pd.Series:
    query = text("SELECT ts, ingested_at FROM bars WHERE symbol = :symbol ORDER BY ts")
    with engine.connect() as conn:
        rows = conn.execute(query, {"symbol": symbol}).all()
    return pd.Series([r[1] for r in rows], index=[r[0] for r in rows], dtype="int64")


def ms(index: pd.Index) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(index).as_unit("ms").asi8)


def stage_exists(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT to_regclass('pg_temp.fks_bars_stage')").scalar_one() is not None


@pytest.fixture
def pg(fresh_postgres: Callable[[str], str]) -> Iterator[Engine]:
    """A migrated store in a fresh PostgreSQL database."""
    engine = open_store(fresh_postgres("fks_copy"))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Engine]:
    """A migrated store in a fresh SQLite file."""
    engine = open_store(f"sqlite:///{tmp_path / 'fks.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which PostgreSQL path each upsert took: ``copy`` (straight into bars) or ``merge`` (staged)."""
    taken: list[str] = []

    def spy(name: str, label: str) -> None:
        real: Callable[..., Any] = getattr(bars_module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            taken.append(label)
            return real(*args, **kwargs)

        monkeypatch.setattr(bars_module, name, wrapper)

    spy("_copy_new", "copy")
    spy("_copy_merge", "merge")
    return taken


def both(
    engines: tuple[Engine, Engine], symbol: str, frame: pd.DataFrame, source: str, stamp: pd.Timestamp
) -> UpsertResult:
    """Upsert on SQLite and on PostgreSQL; both must report the same counts and store the same rows."""
    results = []
    for engine in engines:
        with engine.begin() as conn:
            results.append(upsert_bars(conn, symbol, "1m", frame, source, ingested_at=stamp))
    assert results[0] == results[1]
    assert snapshot(engines[0]) == snapshot(engines[1])
    return results[0]


def test_copy_path_stores_and_counts_exactly_as_sqlite(lite: Engine, pg: Engine, paths: list[str]) -> None:
    engines = (lite, pg)
    series = minute_bars(6000)
    base = series.iloc[:5000]
    stamp_1 = int(STAMP_1.value // 1_000_000)

    # First load: nothing stored, so PostgreSQL COPYs straight into bars.
    first = both(engines, "BTC", base, "synthetic", STAMP_1)
    assert first == UpsertResult(received=5000, inserted=5000, updated=0, unchanged=0)
    assert paths == ["copy"]

    # Re-ingest of the same bars: nothing written, every ingested_at kept.
    again = both(engines, "BTC", base, "synthetic", STAMP_2)
    assert again == UpsertResult(received=5000, inserted=0, updated=0, unchanged=5000)
    assert paths == ["copy", "merge"]
    assert (stamps(pg) == stamp_1).all()

    # Partial change: bars 2000..5999, every 7th close moved, the last 1000 new.
    later = series.iloc[2000:].copy()
    changed = later.index[::7][later.index[::7] < base.index[-1] + pd.Timedelta(minutes=1)]
    later.loc[changed, "close"] *= 1.001
    later.loc[changed, "high"] = later.loc[changed, ["high", "close"]].max(axis=1)
    partial = both(engines, "BTC", later, "synthetic", STAMP_3)
    assert partial == UpsertResult(
        received=4000, inserted=1000, updated=len(changed), unchanged=3000 - len(changed)
    )
    assert paths[-1] == "merge"
    stored = stamps(pg)
    fresh = ms(changed).tolist() + ms(later.index[-1000:]).tolist()
    assert (stored.loc[fresh] == int(STAMP_3.value // 1_000_000)).all()
    assert (stored.drop(fresh) == stamp_1).all()

    # A new source alone is an update; values come back exactly.
    tail = read_bars(pg, "BTC", "1m").iloc[-50:]
    relabel = both(engines, "BTC", tail, "binance", STAMP_4)
    assert relabel == UpsertResult(received=50, inserted=0, updated=50, unchanged=0)
    pd.testing.assert_frame_equal(read_bars(pg, "BTC", "1m"), read_bars(lite, "BTC", "1m"))

    # Another series stores beside it through the COPY path again.
    other = both(engines, "ETH", minute_bars(300, seed=2), "synthetic", STAMP_1)
    assert other == UpsertResult(received=300, inserted=300, updated=0, unchanged=0)
    assert paths[-1] == "copy"


def test_a_writer_that_got_there_first_makes_the_copy_fall_back_to_the_merge(
    lite: Engine, pg: Engine, paths: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = (lite, pg)
    frame = minute_bars(1000)
    both(engines, "BTC", frame.iloc[400:600], "synthetic", STAMP_1)
    # As if another transaction committed bars 400..599 between our count and our COPY: the first
    # PostgreSQL count says 0, later ones are real.
    real_count = bars_module._count_range
    lied: list[bool] = []

    def count(conn: Connection, *args: Any) -> int:
        if conn.dialect.name == "postgresql" and not lied:
            lied.append(True)
            return 0
        return real_count(conn, *args)

    monkeypatch.setattr(bars_module, "_count_range", count)
    result = both(engines, "BTC", frame, "synthetic", STAMP_2)
    assert result == UpsertResult(received=1000, inserted=800, updated=0, unchanged=200)
    assert paths[-2:] == ["copy", "merge"]
    assert (stamps(pg).loc[ms(frame.index[400:600])] == int(STAMP_1.value // 1_000_000)).all()


def test_a_failed_merge_leaves_nothing_half_written(pg: Engine) -> None:
    with pg.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(1200).iloc[:1000], "synthetic", ingested_at=STAMP_1)
        # A test-only constraint so that the merge fails on its last row, after the others went in.
        conn.exec_driver_sql("ALTER TABLE bars ADD CONSTRAINT test_volume CHECK (volume < 1000000)")
    before = snapshot(pg)

    bad = minute_bars(1200).iloc[500:].copy()
    bad.iloc[::3, bad.columns.get_loc("close")] *= 1.01
    bad["high"] = bad[["high", "close"]].max(axis=1)
    bad.iloc[-1, bad.columns.get_loc("volume")] = 5e6
    with pytest.raises(IntegrityError, match="test_volume"), pg.begin() as conn:
        upsert_bars(conn, "ETH", "1m", minute_bars(100, seed=3), "synthetic")  # COPY path, fine
        upsert_bars(conn, "BTC", "1m", bad, "synthetic", ingested_at=STAMP_2)  # merge fails
    assert snapshot(pg) == before

    # Neither the staging table nor a broken session is left behind: the same store merges again.
    with pg.begin() as conn:
        assert not stage_exists(conn)
        result = upsert_bars(conn, "BTC", "1m", bad.iloc[:-1], "synthetic", ingested_at=STAMP_2)
        assert not stage_exists(conn)
    assert result.inserted == 199 and result.updated == 167 and result.unchanged == 333


def test_a_failed_copy_leaves_nothing_half_written(pg: Engine) -> None:
    with pg.begin() as conn:
        upsert_bars(conn, "BTC", "1m", minute_bars(100), "synthetic", ingested_at=STAMP_1)
    before = snapshot(pg)
    with pytest.raises(DBAPIError, match="too long"), pg.begin() as conn:
        upsert_bars(conn, "ETH", "1m", minute_bars(100), "synthetic")
        upsert_bars(conn, "X" * 40, "1m", minute_bars(100), "synthetic")  # symbol is VARCHAR(32)
    assert snapshot(pg) == before


def test_several_merges_in_one_transaction_and_on_an_autocommit_connection(pg: Engine) -> None:
    frame = minute_bars(2000)
    with pg.begin() as conn:
        assert upsert_bars(conn, "BTC", "1m", frame.iloc[:1000], "synthetic").inserted == 1000
        first = upsert_bars(conn, "BTC", "1m", frame.iloc[500:1500], "synthetic")
        second = upsert_bars(conn, "BTC", "1m", frame.iloc[1000:], "synthetic")
        assert not stage_exists(conn)
    assert first == UpsertResult(received=1000, inserted=500, updated=0, unchanged=500)
    assert second == UpsertResult(received=1000, inserted=500, updated=0, unchanged=500)

    autocommit = pg.execution_options(isolation_level="AUTOCOMMIT")
    moved = frame.copy()
    moved.iloc[::2, moved.columns.get_loc("volume")] += 1.0
    with autocommit.connect() as conn:
        result = upsert_bars(conn, "BTC", "1m", moved, "synthetic")
    assert result == UpsertResult(received=2000, inserted=0, updated=1000, unchanged=1000)
    pd.testing.assert_frame_equal(read_bars(pg, "BTC", "1m"), moved, check_freq=False)


def _migration_0013() -> Any:
    path = MIGRATIONS_DIR / "versions" / "0013_bars_hypertable.py"
    spec = importlib.util.spec_from_file_location("fks_migration_0013", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_0013_is_a_no_op_on_sqlite(lite: Engine) -> None:
    with lite.connect() as conn:
        assert _migration_0013().timescaledb_loadable(conn) is False


def test_migration_0013_makes_bars_a_hypertable_only_where_timescaledb_loads(pg: Engine) -> None:
    with pg.connect() as conn:
        loadable = _migration_0013().timescaledb_loadable(conn)
        available = conn.exec_driver_sql(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).first()
        if available is None:
            assert loadable is False
        if loadable:
            hyper = conn.exec_driver_sql(
                "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'bars'"
            ).first()
            assert hyper is not None
        else:
            kind = conn.exec_driver_sql("SELECT relkind FROM pg_class WHERE relname = 'bars'").scalar_one()
            assert kind == "r"  # a plain table
