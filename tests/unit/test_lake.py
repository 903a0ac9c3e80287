"""The Parquet lake on a local folder: layout, idempotent re-export, merges, round trips, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, text

from config.settings import Settings
from market.bars import canonical_bars
from storage import delete_bars, open_store, read_bars, upsert_bars
from storage.lake import (
    Lake,
    LakeError,
    export_series,
    import_series,
    open_lake,
    partition_bounds,
    partition_key,
    partition_label,
    read_lake_series,
    upsert_lake_bars,
)


def _bars(start: str, periods: int, freq: str, seed: int = 7) -> pd.DataFrame:
    """A seeded random walk of realistic OHLCV bars."""
    rng = np.random.default_rng(seed)
    grid = pd.date_range(start, periods=periods, freq=freq, tz="UTC").as_unit("ns").asi8
    index = pd.to_datetime(grid, utc=True).rename("ts")  # no freq, as bars read from the store
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, periods)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.001, periods)) * close
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.uniform(1.0, 1_000.0, periods).round(3),
        },
        index=index,
    )
    return canonical_bars(frame)


@pytest.fixture
def engine(settings: Settings) -> Engine:
    """The migrated store of this test's settings."""
    return open_store(settings.db_url)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty lake in this test's temporary folder."""
    return open_lake(f"file://{tmp_path / 'lake'}")


def _store(engine: Engine, symbol: str, timeframe: str, bars: pd.DataFrame, source: str = "csv") -> None:
    with engine.begin() as conn:
        upsert_bars(conn, symbol, timeframe, bars, source=source)


def _export(lake: Lake, engine: Engine, symbol: str, timeframe: str, **window: str) -> tuple[int, int, int]:
    with engine.connect() as conn:
        result = export_series(lake, conn, symbol, timeframe, **window)
    return result.written, result.unchanged, result.deleted


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    sql = "SELECT symbol, timeframe, ts, open, high, low, close, volume, source FROM bars ORDER BY 1, 2, 3"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_partitions_are_a_day_a_month_a_year() -> None:
    assert partition_label(pd.Timestamp("2024-03-05 23:59", tz="UTC"), "1m") == "2024-03-05"
    assert partition_label(pd.Timestamp("2024-03-31 23:00", tz="UTC"), "1h") == "2024-03"
    assert partition_label(pd.Timestamp("2024-12-31", tz="UTC"), "1d") == "2024"
    assert partition_bounds("2024-02", "1h") == (
        pd.Timestamp("2024-02-01", tz="UTC"),
        pd.Timestamp("2024-03-01", tz="UTC"),
    )
    assert partition_bounds("2024", "1d")[1] == pd.Timestamp("2025-01-01", tz="UTC")
    assert partition_key("EUR/USD", "1m", "2024-01-02") == (
        "symbol=EUR%2FUSD/timeframe=1m/date=2024-01-02/bars.parquet"
    )
    with pytest.raises(ValueError, match="YYYY-MM"):
        partition_bounds("2024", "1h")


def test_layout_schema_and_deterministic_files(engine: Engine, lake: Lake, tmp_path: Path) -> None:
    _store(engine, "BTC-USD", "1m", _bars("2024-01-01 22:00", 180, "1min"))  # crosses midnight
    _store(engine, "EURUSD", "1h", _bars("2024-01-31 20:00", 10, "1h"), source="synthetic")
    _store(engine, "SPX", "1d", _bars("2023-12-28", 10, "1D"))
    for symbol, tf in (("BTC-USD", "1m"), ("EURUSD", "1h"), ("SPX", "1d")):
        _export(lake, engine, symbol, tf)
    root = tmp_path / "lake"
    assert sorted(_files(root)) == [
        "symbol=BTC-USD/timeframe=1m/date=2024-01-01/bars.parquet",
        "symbol=BTC-USD/timeframe=1m/date=2024-01-02/bars.parquet",
        "symbol=EURUSD/timeframe=1h/date=2024-01/bars.parquet",
        "symbol=EURUSD/timeframe=1h/date=2024-02/bars.parquet",
        "symbol=SPX/timeframe=1d/date=2023/bars.parquet",
        "symbol=SPX/timeframe=1d/date=2024/bars.parquet",
    ]
    table = pq.read_table(root / "symbol=BTC-USD/timeframe=1m/date=2024-01-01/bars.parquet")
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert [table.schema.field(c).type for c in ("open", "high", "low", "close", "volume")] == [
        pa.float64()
    ] * 5
    assert table.column("source").to_pylist() == ["csv"] * 120
    assert table.column("ts").to_pandas().is_monotonic_increasing and table.num_rows == 120
    assert b"pandas" not in table.schema.metadata  # a fixed schema, not whatever pandas inferred
    # the same rows give the same bytes, whoever writes them
    copy = open_lake(f"file://{tmp_path / 'copy'}")
    _export(copy, engine, "BTC-USD", "1m")
    assert _files(tmp_path / "copy") == {k: v for k, v in _files(root).items() if "BTC-USD" in k}
    assert lake.series() == [("BTC-USD", "1m"), ("EURUSD", "1h"), ("SPX", "1d")]
    in_january = lake.partitions(timeframe="1h", start="2024-01-15", end="2024-02-01")
    assert [p.label for p in in_january] == ["2024-01"]


def test_reexport_of_unchanged_bars_writes_nothing(engine: Engine, lake: Lake, tmp_path: Path) -> None:
    _store(engine, "BTC-USD", "1m", _bars("2024-01-01", 3 * 1440, "1min"))
    assert _export(lake, engine, "BTC-USD", "1m") == (3, 0, 0)
    root = tmp_path / "lake"
    before = _files(root)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    assert _export(lake, engine, "BTC-USD", "1m") == (0, 3, 0)
    assert _files(root) == before
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == stamps  # not even rewritten
    assert not list(root.rglob("*.tmp"))


def test_import_round_trip_equals_the_store_exactly(settings: Settings, tmp_path: Path) -> None:
    engine = open_store(settings.db_url)
    lake = open_lake(f"file://{tmp_path / 'lake'}")
    _store(engine, "BTC-USD", "1m", _bars("2024-01-01 12:00", 2000, "1min", seed=1), source="synthetic")
    _store(engine, "EUR/USD", "1h", _bars("2023-11-20", 1500, "1h", seed=2))
    _store(engine, "SPX", "1d", _bars("2020-01-01", 900, "1D", seed=3))
    for symbol, tf in (("BTC-USD", "1m"), ("EUR/USD", "1h"), ("SPX", "1d")):
        _export(lake, engine, symbol, tf)

    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    with fresh.begin() as conn:
        results = [import_series(lake, conn, s, tf) for s, tf in lake.series()]
    assert [(r.symbol, r.rows, r.inserted) for r in results] == [
        ("BTC-USD", 2000, 2000),
        ("EUR/USD", 1500, 1500),
        ("SPX", 900, 900),
    ]
    assert _rows(fresh) == _rows(engine)  # every value and source, bit for bit
    pd.testing.assert_frame_equal(read_bars(fresh, "SPX", "1d"), read_bars(engine, "SPX", "1d"))
    with fresh.begin() as conn:
        again = import_series(lake, conn, "BTC-USD", "1m", start="2024-01-02", end="2024-01-02 06:00")
    assert (again.rows, again.inserted, again.updated, again.unchanged) == (360, 0, 0, 360)
    assert again.partitions == 1
    window = lake.read("EUR/USD", "1h", start="2023-12-31 22:00", end="2024-01-01 02:00")
    pd.testing.assert_frame_equal(
        window, read_bars(engine, "EUR/USD", "1h", "2023-12-31 22:00", "2024-01-01 02:00")
    )


def test_read_lake_series_and_upsert_lake_bars_keep_each_bars_source(
    engine: Engine, lake: Lake, tmp_path: Path
) -> None:
    bars = _bars("2024-01-30", 72, "1h")
    _store(engine, "EURUSD", "1h", bars.iloc[:30], source="yahoo")
    _store(engine, "EURUSD", "1h", bars.iloc[30:], source="polygon")
    _export(lake, engine, "EURUSD", "1h")

    read, partitions = read_lake_series(lake, "EURUSD", "1h", start="2024-01-31")
    assert partitions == 2 and len(read) == 48
    assert read["source"].tolist() == ["yahoo"] * 6 + ["polygon"] * 42
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    with fresh.begin() as conn:
        first = upsert_lake_bars(conn, "EURUSD", "1h", read)
        again = upsert_lake_bars(conn, "EURUSD", "1h", read)
        plain = upsert_lake_bars(conn, "EURUSD", "1h", bars.iloc[:1])  # no source column: "lake"
    assert (first.received, first.inserted, again.unchanged, plain.inserted) == (48, 48, 48, 1)
    assert _rows(fresh) == sorted(
        [r for r in _rows(engine) if r[2] >= int(pd.Timestamp("2024-01-31", tz="UTC").value // 10**6)]
        + [(*_rows(engine)[0][:-1], "lake")]
    )


def test_partial_export_merges_and_never_loses_lake_rows(engine: Engine, lake: Lake, tmp_path: Path) -> None:
    bars = _bars("2024-01-01", 31 * 24, "1h")  # January: one partition
    _store(engine, "EURUSD", "1h", bars)
    _export(lake, engine, "EURUSD", "1h")

    # another store holds only 10-15 January, with revised prices: it exports into the same lake
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    revised = bars.loc["2024-01-10":"2024-01-15"] * 1.01
    _store(other, "EURUSD", "1h", revised, source="revised")
    assert _export(lake, other, "EURUSD", "1h") == (1, 0, 0)
    merged = lake.read("EURUSD", "1h", with_source=True)
    assert len(merged) == len(bars)
    inside = (merged.index >= revised.index[0]) & (merged.index <= revised.index[-1])
    pd.testing.assert_frame_equal(merged.loc[inside, list(bars.columns)], revised)
    pd.testing.assert_frame_equal(merged.loc[~inside, list(bars.columns)], bars.loc[~inside])
    assert set(merged.loc[inside, "source"]) == {"revised"} and set(merged.loc[~inside, "source"]) == {"csv"}

    # a windowed export of the first store puts its rows back; the rest stays as it was
    assert _export(lake, engine, "EURUSD", "1h", start="2024-01-12", end="2024-01-14") == (1, 0, 0)
    again = lake.read("EURUSD", "1h")
    pd.testing.assert_frame_equal(again.loc["2024-01-12":"2024-01-13"], bars.loc["2024-01-12":"2024-01-13"])
    pd.testing.assert_frame_equal(
        again.loc["2024-01-10":"2024-01-11"], revised.loc["2024-01-10":"2024-01-11"]
    )


def test_bars_deleted_from_the_store_leave_the_lake_inside_the_exported_span(
    engine: Engine, lake: Lake, tmp_path: Path
) -> None:
    bars = _bars("2024-01-01", 4 * 1440, "1min")
    _store(engine, "BTC-USD", "1m", bars)
    _export(lake, engine, "BTC-USD", "1m")
    day2 = list(bars.loc["2024-01-02"].index)
    day3 = list(bars.loc["2024-01-03 12:00":"2024-01-03 12:09"].index)
    with engine.begin() as conn:
        delete_bars(conn, "BTC-USD", "1m", day2 + day3 + list(bars.index[-30:]))
    # the span is now 01-01 .. 01-04 23:29: day 2 goes, day 3 loses 10 bars, days 1 and 4 are unchanged
    # (the last 30 bars lie after the span, so the lake keeps them)
    assert _export(lake, engine, "BTC-USD", "1m") == (1, 2, 1)
    assert not (tmp_path / "lake" / "symbol=BTC-USD" / "timeframe=1m" / "date=2024-01-02").exists()
    pd.testing.assert_frame_equal(lake.read("BTC-USD", "1m"), bars.drop(day2 + day3))


def test_bad_uris_and_unreadable_files_say_how_to_fix(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(LakeError, match=r"gs://.*file://PATH.*s3://BUCKET/PREFIX"):
        open_lake("gs://bucket/prefix")
    with pytest.raises(LakeError, match="valid bucket"):
        open_lake("s3://Not_A_Bucket/x")
    with pytest.raises(LakeError, match="empty"):
        open_lake("  ")
    assert open_lake(str(tmp_path / "bare")).uri.startswith("file://")

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(LakeError, match="is a file, not a folder"):
        open_lake(f"file://{a_file}").partitions()

    lake = open_lake(f"file://{tmp_path / 'lake'}")
    _store(engine, "SPX", "1d", _bars("2023-12-01", 60, "1D"))
    _export(lake, engine, "SPX", "1d")
    broken = tmp_path / "lake" / partition_key("SPX", "1d", "2024")
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LakeError, match=r"date=2024/bars\.parquet is not a readable Parquet file"):
        lake.read("SPX", "1d")
    assert len(lake.read("SPX", "1d", end="2024-01-01")) == 31  # the other partition still reads

    pq.write_table(pa.table({"ts": [1], "price": [1.0]}), broken)
    with pytest.raises(LakeError, match=r"lacks column\(s\) open"):
        lake.read("SPX", "1d")
    stray = tmp_path / "lake" / "symbol=SPX" / "timeframe=1d" / "date=2024-13" / "bars.parquet"
    stray.parent.mkdir()
    stray.write_bytes(b"")
    with pytest.raises(LakeError, match=r"date=2024-13.*move or delete"):
        lake.partitions()


def test_a_file_holding_bars_of_another_partition_is_refused(
    engine: Engine, lake: Lake, tmp_path: Path
) -> None:
    _store(engine, "SPX", "1d", _bars("2023-12-01", 60, "1D"))
    _export(lake, engine, "SPX", "1d")
    root = tmp_path / "lake"
    (root / partition_key("SPX", "1d", "2024")).write_bytes(
        (root / partition_key("SPX", "1d", "2023")).read_bytes()
    )
    with pytest.raises(LakeError, match="outside its partition 2024"):
        lake.read("SPX", "1d")


def test_open_object_names_the_store_and_key_of_a_full_uri(tmp_path: Path) -> None:
    from storage.lake.stores import LocalStore, S3Store, has_scheme, open_object

    store, key = open_object(f"file://{tmp_path.as_posix()}/a/b/build-1.parquet")
    assert isinstance(store, LocalStore) and store.root == tmp_path / "a" / "b" and key == "build-1.parquet"
    assert not store.exists(key)
    store.put(key, b"bytes")  # atomic local write, folders made
    assert store.exists(key) and store.get(key) == b"bytes" and (tmp_path / "a" / "b" / key).is_file()
    s3, s3_key = open_object("s3://fks-lake/research/features/build-2.parquet", "http://127.0.0.1:9")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix, s3_key) == (
        "fks-lake",
        "research/features",
        "build-2.parquet",
    )
    assert (
        has_scheme("s3://b/k") and has_scheme("file:///x") and not has_scheme("core/1/BTC/1h/build-1.parquet")
    )
    for bad in ("core/1/BTC/1h/build-1.parquet", "s3://fks-lake/", "file:///"):
        with pytest.raises(LakeError, match="full URI"):
            open_object(bad)
    with pytest.raises(LakeError, match="s3://BUCKET"):
        open_object("gs://bucket/features/build-3.parquet")
