"""Feature builds of stored series: build a feature set from the stored bars, validate it with the
``features`` suite and store it in the feature store, unless an identical build exists.

:func:`feature_targets` lists the stored series a :class:`FeaturesConfig` asks for;
:func:`featurise_series` builds one (what each ``build-features`` task runs)::

    engine = open_store(settings.db_url)
    for target in feature_targets(engine, FeaturesConfig(feature_set="default")):
        print(featurise_series(engine, settings, target))
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from config.flows import FeaturesConfig, InputError
from config.settings import Settings
from expectations.runner import validate_features
from expectations.screening import docs_dir, policy_for
from features import build_features, get_feature_set
from storage.bars import bar_summary, read_bars
from storage.feature_store import FeatureRoot, bars_checksum, find_build, has_build_file, save_features


class FeaturesTarget(BaseModel):
    """One stored series to build features for."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    feature_set: str


class FeaturesOutcome(BaseModel):
    """What building one series' features did."""

    symbol: str
    timeframe: str
    feature_set: str
    version: str
    build_id: int
    cache_hit: bool
    rows: int
    columns: int
    warmup: int
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    docs_path: str = ""


class FeaturesSummary(BaseModel):
    """The features flow's result."""

    batch_id: str
    outcomes: list[FeaturesOutcome]


class FeatureValidationFailed(RuntimeError):
    """A built feature frame failed the ``features`` suite; nothing was stored."""


def features_root(settings: Settings) -> FeatureRoot:
    """Where feature Parquet files live: ``<FKS_LAKE_URI>/features`` (a folder or an S3 prefix,
    reached through ``FKS_S3_ENDPOINT_URL``), so every worker with the same lake settings reads
    the same builds; builds recorded before full URIs resolve under ``<FKS_DATA_DIR>/features``."""
    return FeatureRoot(
        uri=f"{settings.lake_uri.rstrip('/')}/features",
        endpoint_url=settings.s3_endpoint_url,
        legacy_dir=settings.data_dir / "features",
    )


def feature_targets(engine: Engine, config: FeaturesConfig) -> list[FeaturesTarget]:
    """The stored series to featurise, filtered by symbol and timeframe.

    Raises:
        InputError: an unknown feature set, a symbol without bars, or an empty store.
    """
    try:
        get_feature_set(config.feature_set)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with engine.connect() as conn:
        series = bar_summary(conn)
    if config.timeframe is not None:
        series = series[series["timeframe"] == config.timeframe]
    unknown = sorted(set(config.symbols) - set(series["symbol"]))
    if unknown:
        raise InputError(
            f"no stored bars for {', '.join(unknown)}; run `fks ingest` first or check `fks data list`"
        )
    if config.symbols:
        series = series[series["symbol"].isin(config.symbols)]
    if series.empty:
        raise InputError("the store has no bars to build features from; run `fks ingest` first")
    return [
        FeaturesTarget(symbol=str(r.symbol), timeframe=str(r.timeframe), feature_set=config.feature_set)
        for r in series.itertuples(index=False)
    ]


def featurise_series(engine: Engine, settings: Settings, target: FeaturesTarget) -> FeaturesOutcome:
    """Build ``target``'s feature set from its stored bars unless an identical build exists.

    The bars' checksum keys the cache: unchanged bars are a hit and nothing is recomputed, unless
    the build's file is missing at the URI its row records: the frame is then built and validated
    again and the file written there again. A new frame must pass the ``features`` suite before it
    is stored under :func:`features_root`.

    Raises:
        FeatureValidationFailed: the frame failed the suite (the message names the expectations).
    """
    feature_set = get_feature_set(target.feature_set)
    with engine.connect() as conn:
        bars = read_bars(conn, target.symbol, target.timeframe)
        checksum = bars_checksum(bars)
        build = find_build(
            conn,
            set_name=feature_set.name,
            set_version=feature_set.version,
            symbol=target.symbol,
            timeframe=target.timeframe,
            bars_checksum=checksum,
        )
    if build is not None and not has_build_file(features_root(settings), build):
        build = None  # its file is gone (deleted, a lost local disk): built again, the file restored
    docs = ""
    cache_hit = build is not None
    if build is None:
        frame = build_features(bars, feature_set, timeframe=target.timeframe)
        report = validate_features(
            frame,
            feature_set.warmup,
            policy=policy_for(settings),
            docs_dir=docs_dir(settings),
            series=f"{target.symbol} {target.timeframe} features {feature_set.name} v{feature_set.version}",
        )
        docs = str(report.docs_path or "")
        if not report.success:
            failed = sorted({e for ids in report.failures.values() for e in ids})
            raise FeatureValidationFailed(
                f"{target.symbol} {target.timeframe}: feature set {feature_set.name} "
                f"failed {', '.join(failed)} "
                f"on {len(report.failures)} row(s); nothing stored. Data Docs: {docs or '-'}"
            )
        with engine.begin() as conn:
            build = save_features(
                conn,
                features_root(settings),
                set_name=feature_set.name,
                set_version=feature_set.version,
                symbol=target.symbol,
                timeframe=target.timeframe,
                features=frame,
                bars=bars,
            )
    return FeaturesOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        feature_set=feature_set.name,
        version=feature_set.version,
        build_id=build.id,
        cache_hit=cache_hit,
        rows=build.rows,
        columns=len(build.columns),
        warmup=feature_set.warmup,
        first_ts=bars.index[0].to_pydatetime() if len(bars) else None,
        last_ts=bars.index[-1].to_pydatetime() if len(bars) else None,
        docs_path=docs,
    )
