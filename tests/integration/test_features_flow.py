"""The features flow in Prefect runs: build, validate, store, cache hits, rebuilds and point-in-time reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection

from config.flows import FeaturesConfig, IngestConfig, InputError
from config.settings import Settings
from features import build_features, get_feature_set
from flows.features import features
from flows.ingest import ingest
from ingestion.features import features_root
from storage import list_builds, read_bars, read_features
from tasks.store import store_for

pytestmark = pytest.mark.usefixtures("prefect_server")


def _spx_features(conn: Connection, settings: Settings) -> pd.DataFrame:
    """The stored ``default`` features of SPX 1d under ``settings``' feature store root."""
    version = get_feature_set("default").version
    return read_features(
        conn, features_root(settings), set_name="default", set_version=version, symbol="SPX", timeframe="1d"
    )


def test_features_are_built_once_then_cached_and_equal_a_direct_build(settings: Settings) -> None:
    ingest(IngestConfig(), settings)
    first = features(FeaturesConfig(), settings)
    assert {(o.symbol, o.timeframe, o.cache_hit) for o in first.outcomes} == {
        ("SPX", "1d", False),
        ("GOOGL", "1d", False),
        ("EURUSD", "1h", False),
    }
    default = get_feature_set("default")
    engine = store_for(settings)
    with engine.connect() as conn:
        bars = read_bars(conn, "SPX", "1d")
        stored = _spx_features(conn, settings)
    pd.testing.assert_frame_equal(stored, build_features(bars, default), check_freq=False)
    assert stored.iloc[default.warmup :].notna().all().all()

    again = features(FeaturesConfig(symbols=["SPX"]), settings)
    assert [(o.cache_hit, o.build_id) for o in again.outcomes] == [
        (True, next(o.build_id for o in first.outcomes if o.symbol == "SPX"))
    ]
    with engine.connect() as conn:
        assert len(list_builds(conn, symbol="SPX")) == 1

    # another machine on the same database and lake, with its own data dir, reads the build: a hit
    elsewhere = settings.model_copy(update={"data_dir": settings.data_dir.parent / "elsewhere"})
    assert elsewhere.lake_uri == settings.lake_uri
    there = features(FeaturesConfig(symbols=["SPX"]), elsewhere).outcomes[0]
    assert (there.cache_hit, there.build_id) == (True, again.outcomes[0].build_id)
    with engine.connect() as conn:
        (build,) = list_builds(conn, symbol="SPX")
        pd.testing.assert_frame_equal(_spx_features(conn, elsewhere), stored)
    assert build.path.startswith(f"{settings.lake_uri}/features/")
    assert not (elsewhere.data_dir / "features").exists()

    # a build whose file vanished is built again and its file written where its row says, no new build
    Path(build.path.removeprefix("file://")).unlink()
    restored = features(FeaturesConfig(symbols=["SPX"]), elsewhere).outcomes[0]
    assert (restored.cache_hit, restored.build_id) == (False, build.id)
    with engine.connect() as conn:
        assert list_builds(conn, symbol="SPX") == [build]
        pd.testing.assert_frame_equal(_spx_features(conn, settings), stored)
    assert features(FeaturesConfig(symbols=["SPX"]), elsewhere).outcomes[0].cache_hit


def test_changed_bars_rebuild_and_old_builds_stay_readable_as_of(settings: Settings) -> None:
    common = {
        "source": "synthetic",
        "symbols": ["SYN"],
        "timeframe": "1h",
        "asset_class": "crypto",
        "start": "2024-01-01",
        "seed": 5,
    }
    ingest(IngestConfig(**common, end="2024-01-20"), settings)
    first = features(FeaturesConfig(symbols=["SYN"], feature_set="minimal"), settings).outcomes[0]
    ingest(IngestConfig(**common, end="2024-01-25"), settings)
    second = features(FeaturesConfig(symbols=["SYN"], feature_set="minimal"), settings).outcomes[0]
    assert not second.cache_hit and second.build_id != first.build_id and second.rows == first.rows + 5 * 24
    version = get_feature_set("minimal").version
    engine = store_for(settings)
    with engine.connect() as conn:
        builds = list_builds(conn, symbol="SYN")
        old_time = next(b.built_at for b in builds if b.id == first.build_id)
        as_of = read_features(
            conn,
            features_root(settings),
            set_name="minimal",
            set_version=version,
            symbol="SYN",
            timeframe="1h",
            as_of=old_time,
        )
        latest = read_features(
            conn,
            features_root(settings),
            set_name="minimal",
            set_version=version,
            symbol="SYN",
            timeframe="1h",
        )
    assert len(as_of) <= first.rows and len(latest) == second.rows
    overlap = as_of.index.intersection(latest.index)
    pd.testing.assert_frame_equal(
        as_of.loc[overlap], latest.loc[overlap]
    )  # no look-ahead: old rows unchanged


def test_unknown_feature_set_and_symbol_are_refused(settings: Settings) -> None:
    ingest(IngestConfig(symbols=["GOOGL"]), settings)
    with pytest.raises(InputError, match="nope"):
        features(FeaturesConfig(feature_set="nope"), settings)
    with pytest.raises(InputError, match="no stored bars for MSFT"):
        features(FeaturesConfig(symbols=["MSFT"]), settings)
