"""The point-in-time feature store on a real database and real Parquet files (migration 0003).

Every test runs on a fresh SQLite file. When ``TEST_POSTGRES_URL`` names a PostgreSQL server
(for example ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, a role that may create
databases) and its driver is installed, every test also runs on a fresh PostgreSQL database.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from config.settings import PROJECT_ROOT
from storage import (
    FeatureBuild,
    FeatureRoot,
    bars_checksum,
    build_uri,
    find_build,
    has_build_file,
    list_builds,
    list_ingest_runs,
    make_engine,
    migrate,
    read_bars,
    read_features,
    save_features,
    upsert_bars,
)
from storage.db import VERSION_TABLE, head_revision
from storage.lake import LakeError
from storage.schema import Base
from tests.migration_support import db_revision, migrate_to

COMPARE_OPTS = {"compare_type": True, "version_table": VERSION_TABLE}

KEY = {"set_name": "core", "set_version": "1", "symbol": "BTC", "timeframe": "1h"}
T1 = pd.Timestamp("2025-01-10 00:00", tz="UTC")
T2 = pd.Timestamp("2025-02-10 00:00", tz="UTC")


def hour_bars(n: int, start: str = "2025-01-01", seed: int = 1) -> pd.DataFrame:
    """A valid random-walk hourly series (canonical frame)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-2, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range(start, periods=n, freq="1h", tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": rng.lognormal(2.0, 1.0, n),
        },
        index=index,
    )


def features_of(bars: pd.DataFrame) -> pd.DataFrame:
    """A small feature frame of mixed dtypes in a deliberate, non-alphabetical column order."""
    close = bars["close"]
    return pd.DataFrame(
        {
            "sma_5": close.rolling(5).mean(),  # NaN during warm-up
            "ret_1": np.log(close).diff(),
            "up": close.diff() > 0,
            "hour": bars.index.hour.astype("int64"),
        },
        index=bars.index,
    )


def build_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def local(build: FeatureBuild) -> Path:
    """The local file a build's recorded ``file://`` URI names."""
    assert build.path.startswith("file:///"), build.path
    return Path(build.path.removeprefix("file://"))


def key(root: Path, build: FeatureBuild) -> str:
    """A build's file relative to ``root`` (fails when it is not under it)."""
    return local(build).relative_to(root).as_posix()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "features"


# --- checksum ------------------------------------------------------------------------------------


def test_checksum_changes_with_any_value_or_timestamp() -> None:
    bars = hour_bars(300)
    base = bars_checksum(bars)
    assert len(base) == 64 and int(base, 16) >= 0
    assert bars_checksum(bars.copy()) == base
    assert bars_checksum(bars.iloc[::-1]) == base  # same bars, canonical order
    assert bars_checksum(bars[["volume", "close", "low", "high", "open"]]) == base
    one_value = bars.copy()
    one_value.iloc[150, one_value.columns.get_loc("volume")] = np.nextafter(one_value["volume"].iloc[150], 0)
    assert bars_checksum(one_value) != base
    one_stamp = bars.copy()
    one_stamp.index = bars.index.where(bars.index != bars.index[-1], bars.index[-1] + pd.Timedelta("1ms"))
    assert bars_checksum(one_stamp) != base
    assert bars_checksum(bars.iloc[:-1]) != base
    with pytest.raises(TypeError, match="DataFrame"):
        bars_checksum(bars["close"])  # type: ignore[arg-type]


# --- save, read, cache ---------------------------------------------------------------------------


def test_save_then_read_round_trips_exactly(engine: Engine, root: Path) -> None:
    bars = hour_bars(500)
    features = features_of(bars)
    with engine.begin() as conn:
        build = save_features(conn, root, **KEY, features=features, bars=bars, built_at=T1)
    assert build == FeatureBuild(
        id=build.id,
        set_name="core",
        set_version="1",
        symbol="BTC",
        timeframe="1h",
        bars_first=bars.index[0],
        bars_last=bars.index[-1],
        bar_count=500,
        bars_checksum=bars_checksum(bars),
        rows=500,
        columns=("sma_5", "ret_1", "up", "hour"),
        path=f"file://{root.as_posix()}/core/1/BTC/1h/build-{build.id}.parquet",
        built_at=T1,
    )
    assert build_files(root) == [key(root, build)]
    with engine.connect() as conn:
        out = read_features(conn, root, **KEY)
        assert list_builds(conn) == [build]
        assert find_build(conn, **KEY, bars_checksum=bars_checksum(bars)) == build
    pd.testing.assert_frame_equal(out, features, check_freq=False)
    assert list(out.columns) == ["sma_5", "ret_1", "up", "hour"]
    assert out.index.name == "ts" and out.index.dtype == "datetime64[ns, UTC]"
    with engine.connect() as conn:
        window = read_features(
            conn, root, **KEY, start="2025-01-02", end=pd.Timestamp("2025-01-03", tz="UTC")
        )
    assert len(window) == 24 and window.index[0] == pd.Timestamp("2025-01-02", tz="UTC")
    pd.testing.assert_frame_equal(window, features.loc["2025-01-02"], check_freq=False)


def test_unchanged_input_is_a_cache_hit_and_writes_nothing(engine: Engine, root: Path) -> None:
    bars = hour_bars(200)
    with engine.begin() as conn:
        first = save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T1)
    stat = local(first).stat()
    with engine.begin() as conn:
        hit = find_build(conn, **KEY, bars_checksum=bars_checksum(bars.copy()))
        again = save_features(
            conn, root, **KEY, features=features_of(bars) * 0, bars=bars.copy(), built_at=T2
        )
    assert hit == first and again == first
    assert build_files(root) == [key(root, first)]
    assert local(first).stat().st_mtime_ns == stat.st_mtime_ns
    with engine.connect() as conn:
        assert len(list_builds(conn)) == 1
        assert find_build(conn, **{**KEY, "set_version": "2"}, bars_checksum=first.bars_checksum) is None


def test_a_build_whose_file_vanished_gets_it_written_again_not_a_new_build(
    engine: Engine, root: Path, tmp_path: Path
) -> None:
    bars = hour_bars(200)
    with engine.begin() as conn:
        first = save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T1)
    file = local(first)
    metadata = pq.read_schema(file).metadata
    file.unlink()
    with engine.connect() as conn, pytest.raises(FileNotFoundError) as missing:
        read_features(conn, root, **KEY)
    assert first.path in str(missing.value) and "fks features" in str(missing.value)
    elsewhere = tmp_path / "elsewhere" / "features"  # another worker's root, same database
    with engine.begin() as conn:
        assert not has_build_file(elsewhere, first)
        again = save_features(
            conn, elsewhere, **KEY, features=features_of(bars), bars=bars.copy(), built_at=T2
        )
    assert again == first and file.is_file() and not elsewhere.exists()  # written where the row says
    assert pq.read_schema(file).metadata == metadata
    with engine.connect() as conn:
        assert list_builds(conn) == [first] and has_build_file(elsewhere, first)
        pd.testing.assert_frame_equal(read_features(conn, elsewhere, **KEY), read_features(conn, root, **KEY))
    file.unlink()
    with engine.begin() as conn, pytest.raises(ValueError, match="new set version"):
        save_features(conn, root, **KEY, features=features_of(bars).iloc[:, :2], bars=bars)
    assert not file.exists()


def _record_path(conn: Connection, build: FeatureBuild, path: str) -> FeatureBuild:
    """Make ``build``'s row record ``path`` (as rows before full URIs did, or a foreign URI)."""
    conn.execute(
        text("UPDATE feature_builds SET path = :path WHERE id = :id"), {"path": path, "id": build.id}
    )
    return replace(build, path=path)


def test_an_old_row_with_a_relative_path_reads_under_the_legacy_folder(
    engine: Engine, tmp_path: Path
) -> None:
    legacy = tmp_path / "data" / "features"  # where builds went before they had full URIs
    bars = hour_bars(120)
    with engine.begin() as conn:
        build = save_features(conn, legacy, **KEY, features=features_of(bars), bars=bars, built_at=T1)
        old = _record_path(conn, build, key(legacy, build))
    assert old.path == f"core/1/BTC/1h/build-{build.id}.parquet"
    lake = FeatureRoot(uri=f"file://{tmp_path / 'lake' / 'features'}", legacy_dir=legacy)
    with engine.connect() as conn:
        assert list_builds(conn) == [old]
        pd.testing.assert_frame_equal(
            read_features(conn, lake, **KEY, as_of=T1), features_of(bars), check_freq=False
        )
        pd.testing.assert_frame_equal(read_features(conn, legacy, **KEY), features_of(bars), check_freq=False)
    assert build_uri(lake, old) == f"file://{legacy.as_posix()}/{old.path}" and has_build_file(lake, old)
    (legacy / old.path).unlink()
    with engine.begin() as conn:  # the vanished old file is written again where it was, the row kept
        again = save_features(conn, lake, **KEY, features=features_of(bars), bars=bars, built_at=T2)
    assert again == old and (legacy / old.path).is_file() and not (tmp_path / "lake").exists()


def test_a_uri_this_worker_cannot_open_is_a_clear_error(engine: Engine, root: Path) -> None:
    bars = hour_bars(50)
    with engine.begin() as conn:
        build = save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T1)
        _record_path(conn, build, f"gs://other-cloud/features/build-{build.id}.parquet")
    with engine.connect() as conn, pytest.raises(LakeError) as refused:
        read_features(conn, root, **KEY)
    message = str(refused.value)
    for part in (
        f"feature build {build.id}",
        "gs://other-cloud",
        "s3://",
        "FKS_LAKE_URI",
        "FKS_S3_ENDPOINT_URL",
    ):
        assert part in message


def test_changed_input_makes_a_new_build_and_the_old_one_stays_readable(engine: Engine, root: Path) -> None:
    old_bars = hour_bars(200)
    new_bars = hour_bars(260)  # same history plus 60 newer bars
    old_features, new_features = features_of(old_bars), features_of(new_bars)
    with engine.begin() as conn:
        old = save_features(conn, root, **KEY, features=old_features, bars=old_bars, built_at=T1)
    with engine.begin() as conn:
        new = save_features(conn, root, **KEY, features=new_features, bars=new_bars, built_at=T2)
    assert new.id != old.id and new.bars_checksum != old.bars_checksum and new.path != old.path
    assert build_files(root) == sorted([key(root, old), key(root, new)])
    with engine.connect() as conn:
        assert [b.id for b in list_builds(conn, symbol="BTC")] == [old.id, new.id]
        assert list_builds(conn, set_name="other") == []
        latest = read_features(conn, root, **KEY)
        before_second = read_features(conn, root, **KEY, as_of=T2 - pd.Timedelta("1ms"))
        at_second = read_features(conn, root, **KEY, as_of=T2)
    pd.testing.assert_frame_equal(latest, new_features, check_freq=False)
    pd.testing.assert_frame_equal(at_second, new_features, check_freq=False)
    pd.testing.assert_frame_equal(before_second, old_features, check_freq=False)  # the first build's data
    pd.testing.assert_frame_equal(pd.read_parquet(local(old)), old_features, check_freq=False)


def test_as_of_cuts_rows_after_it(engine: Engine, root: Path) -> None:
    bars = hour_bars(240)  # 2025-01-01 00:00 .. 2025-01-10 23:00
    features = features_of(bars)
    with engine.begin() as conn:
        save_features(conn, root, **KEY, features=features, bars=bars, built_at=pd.Timestamp("2025-01-01"))
    as_of = pd.Timestamp("2025-01-05 12:30", tz="UTC")
    with engine.connect() as conn:
        out = read_features(conn, root, **KEY, as_of=as_of)
        naive = read_features(conn, root, **KEY, as_of=pd.Timestamp("2025-01-05 12:30"))
        ranged = read_features(conn, root, **KEY, as_of=as_of, start="2025-01-05")
    assert out.index.max() == pd.Timestamp("2025-01-05 12:00", tz="UTC") and (out.index <= as_of).all()
    pd.testing.assert_frame_equal(out, features.loc[:as_of], check_freq=False)
    pd.testing.assert_frame_equal(naive, out)
    assert len(ranged) == 13 and ranged.index[0] == pd.Timestamp("2025-01-05", tz="UTC")


def test_no_build_raises_lookup_error_that_says_what_to_run(engine: Engine, root: Path) -> None:
    with engine.connect() as conn, pytest.raises(LookupError) as missing:
        read_features(conn, root, **KEY)
    message = str(missing.value)
    for part in ("'core'", "'1'", "BTC", "1h", "fks features"):
        assert part in message
    bars = hour_bars(50)
    with engine.begin() as conn:
        save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T2)
    with engine.connect() as conn, pytest.raises(LookupError, match=r"as_of=2025-01-10.*fks features"):
        read_features(conn, root, **KEY, as_of=T1)


def test_bad_input_is_rejected_with_a_clear_message(engine: Engine, root: Path) -> None:
    bars = hour_bars(20)
    features = features_of(bars)
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="folder name"):
            save_features(conn, root, **{**KEY, "symbol": "EUR/USD"}, features=features, bars=bars)
        with pytest.raises(ValueError, match="folder name"):
            save_features(conn, root, **{**KEY, "set_version": ".."}, features=features, bars=bars)
        with pytest.raises(ValueError, match="unknown timeframe"):
            save_features(conn, root, **{**KEY, "timeframe": "5m"}, features=features, bars=bars)
        with pytest.raises(ValueError, match="sorted"):
            save_features(conn, root, **KEY, features=features.iloc[::-1], bars=bars)
        with pytest.raises(ValueError, match="DatetimeIndex"):
            save_features(conn, root, **KEY, features=features.reset_index(), bars=bars)
        with pytest.raises(ValueError, match="repeat"):
            save_features(conn, root, **KEY, features=features[["up", "up"]], bars=bars)
        with pytest.raises(ValueError, match="at least one input bar"):
            save_features(conn, root, **KEY, features=features, bars=bars.iloc[:0])
        assert list_builds(conn) == []
    assert not root.exists() or build_files(root) == []


# --- transactions and crashes --------------------------------------------------------------------


def test_rolled_back_transaction_leaves_no_build(engine: Engine, root: Path) -> None:
    bars = hour_bars(100)
    with pytest.raises(RuntimeError, match="later step failed"), engine.begin() as conn:
        save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T1)
        raise RuntimeError("a later step failed")
    with engine.connect() as conn:
        assert list_builds(conn) == []
        assert find_build(conn, **KEY, bars_checksum=bars_checksum(bars)) is None
        with pytest.raises(LookupError, match="fks features"):
            read_features(conn, root, **KEY)  # an orphan file is never read
    with engine.begin() as conn:  # building again works (and may reuse the orphan's name)
        build = save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T2)
    with engine.connect() as conn:
        pd.testing.assert_frame_equal(read_features(conn, root, **KEY), features_of(bars), check_freq=False)
    assert key(root, build) in build_files(root)


def _refuse_inserts(conn: object, dialect: str) -> None:
    """A real database trigger that makes every insert into feature_builds fail."""
    run = conn.exec_driver_sql  # type: ignore[attr-defined]
    if dialect == "sqlite":
        run(
            "CREATE TRIGGER refuse BEFORE INSERT ON feature_builds "
            "BEGIN SELECT RAISE(ABORT, 'inserts refused'); END"
        )
        return
    run(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'inserts refused'; END $$"
    )
    run("CREATE TRIGGER refuse BEFORE INSERT ON feature_builds FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_failed_insert_removes_the_file_and_leaves_no_row(engine: Engine, root: Path) -> None:
    bars = hour_bars(100)
    with pytest.raises(DBAPIError, match="inserts refused"), engine.begin() as conn:
        _refuse_inserts(conn, engine.dialect.name)
        save_features(conn, root, **KEY, features=features_of(bars), bars=bars, built_at=T1)
    assert build_files(root) == []  # neither the temporary file nor a build file
    with engine.connect() as conn:
        assert list_builds(conn) == []


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np, pandas as pd
    from storage import make_engine, save_features

    def crash(src, dst):  # the process dies between writing the temporary file and renaming it
        os._exit(17)

    os.replace = crash
    index = pd.date_range("2025-01-01", periods=50, freq="1h", tz="UTC", name="ts").as_unit("ns")
    close = np.linspace(100.0, 110.0, 50)
    bars = pd.DataFrame(
        {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": close}, index=index
    )
    engine = make_engine(sys.argv[1])
    with engine.begin() as conn:
        save_features(conn, sys.argv[2], set_name="core", set_version="1", symbol="BTC", timeframe="1h",
                      features=bars[["close"]].rename(columns={"close": "f"}), bars=bars)
    """
)


def test_crash_before_rename_leaves_no_file_under_a_build_name(url: str, root: Path) -> None:
    eng = make_engine(url)
    migrate(eng)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CRASH_SCRIPT, url, str(root)],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            check=False,
            timeout=120,
        )
        assert done.returncode == 17, done.stderr
        leftovers = build_files(root)
        assert len(leftovers) == 1 and leftovers[0].startswith("core/1/BTC/1h/.build-"), leftovers
        assert not list(root.rglob("build-*.parquet"))
        with eng.connect() as conn:
            assert list_builds(conn) == []  # the transaction never committed
            with pytest.raises(LookupError):
                read_features(conn, root, **KEY)
    finally:
        eng.dispose()


# --- migration -----------------------------------------------------------------------------------


def test_migration_from_0002_keeps_the_data(url: str, root: Path) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0002")
        assert db_revision(eng) == "0002"
        assert "feature_builds" not in inspect(eng).get_table_names()
        bars = hour_bars(72)
        with eng.begin() as conn:
            upsert_bars(conn, "BTC", "1h", bars, "csv")
            # a run as 0002 stored it (today's start_ingest_run writes columns 0011 added)
            conn.exec_driver_sql(
                "INSERT INTO ingest_runs (batch_id, symbol, timeframe, source, requested, status, "
                "started_at) VALUES ('old', 'BTC', '1h', 'csv', '{\"path\": \"x\"}', 'running', 1)"
            )
            run_id = conn.exec_driver_sql("SELECT id FROM ingest_runs").scalar_one()
        migrate(eng)
        migrate(eng)  # at head: a no-op
        assert db_revision(eng) == head_revision()
        pd.testing.assert_frame_equal(read_bars(eng, "BTC", "1h"), bars, check_freq=False)
        indexes = {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("feature_builds")}
        assert indexes["ix_feature_builds_series_built_at"] == [
            "set_name",
            "set_version",
            "symbol",
            "timeframe",
            "built_at",
        ]
        with eng.connect() as conn:
            context = MigrationContext.configure(conn, opts=COMPARE_OPTS)
            assert compare_metadata(context, Base.metadata) == []
        with eng.begin() as conn:
            assert [r.id for r in list_ingest_runs(conn)] == [run_id]
            stored = read_bars(conn, "BTC", "1h")
            build = save_features(conn, root, **KEY, features=features_of(stored), bars=stored)
            assert build.bars_checksum == bars_checksum(bars)
    finally:
        eng.dispose()
