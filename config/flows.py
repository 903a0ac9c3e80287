"""Each flow's one parameter: a pydantic config model with its defaults."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from config.assets import AssetClass
from config.backtest import BacktestConfig, PromoteConfig
from config.models import AllocatorConfig, ForecasterConfig

TIMEFRAMES = ("1m", "1h", "1d")


def _upper_symbols(value: list[str]) -> list[str]:
    return [s.strip().upper() for s in value if s.strip()]


def _timeframe_name(value: str | None) -> str | None:
    if value is not None and value.strip().lower() not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {value!r}: use one of {', '.join(TIMEFRAMES)}")
    return value.strip().lower() if value is not None else None


def _utc_time(value: datetime | None) -> datetime | None:
    """Naive times are UTC; aware times are converted to UTC."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


Symbols = Annotated[list[str], AfterValidator(_upper_symbols)]
UtcTime = Annotated[datetime | None, AfterValidator(_utc_time)]
TimeframeName = Annotated[str | None, AfterValidator(_timeframe_name)]


class Source(StrEnum):
    """Data sources: the offline ones, ``auto`` (the online providers in priority order) or one
    online provider asked first (failover to the others still applies)."""

    CSV = "csv"
    SYNTHETIC = "synthetic"
    AUTO = "auto"
    BINANCE = "binance"
    YAHOO = "yahoo"
    POLYGON = "polygon"
    ALPHAVANTAGE = "alphavantage"
    COINGECKO = "coingecko"

    @property
    def online(self) -> bool:
        """True for ``auto`` and the online providers."""
        return self not in (Source.CSV, Source.SYNTHETIC)


class IngestConfig(BaseModel):
    """What ``fks ingest`` / the ``ingest`` flow should load.

    With no ``source``, every enabled asset of the registry (or the named ``symbols``, enabled
    or not) is loaded from its default source (the shipped samples, or the online providers for
    ``default_source: auto``). With ``source=csv``, one file (``path``) for one symbol; with
    ``source=synthetic``, the simulated market of ``symbols`` from ``start`` to ``end``; with
    ``source=auto`` or a provider name, registered ``symbols`` from the online providers.
    Ingestion resumes from each series' watermark (its last stored bar, re-fetched so a revised
    last bar is updated) unless ``full`` is set. ``adjust`` scales a CSV by its ``Adj Close``;
    ``adjust_splits`` back-adjusts the fetched bars by the splits recorded in ``corporate_actions``
    (re-ingest with ``full`` after a new split is recorded, so older bars are adjusted too).
    """

    model_config = ConfigDict(extra="forbid")

    source: Source | None = None
    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    path: Path | None = None
    date_format: str | None = None
    adjust: bool = False
    adjust_splits: bool = False
    asset_class: AssetClass | None = None
    calendar: str | None = None
    start: UtcTime = None
    end: UtcTime = None
    seed: int = 7
    full: bool = False
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @model_validator(mode="after")
    def _consistent(self) -> IngestConfig:
        if self.source is Source.CSV:
            if self.path is None or len(self.symbols) != 1:
                raise ValueError("--source csv needs --path FILE and exactly one --symbol")
        elif self.source is Source.SYNTHETIC:
            if not self.symbols or self.timeframe is None or self.start is None or self.end is None:
                raise ValueError("--source synthetic needs --symbols, --timeframe, --start and --end")
        elif self.source is not None and self.source.online:
            if not self.symbols:
                raise ValueError(
                    f"--source {self.source.value} needs --symbols (registered in config/assets.yaml)"
                )
            if self.path is not None or self.asset_class is not None or self.calendar is not None:
                raise ValueError(
                    f"--path, --asset-class and --calendar do not apply to --source {self.source.value}: "
                    "online symbols take them from the asset registry"
                )
        elif self.path is not None or self.asset_class is not None or self.calendar is not None:
            raise ValueError("--path, --asset-class and --calendar need --source csv or synthetic")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(
                f"--end ({self.end:%Y-%m-%d %H:%M}) must be after --start ({self.start:%Y-%m-%d %H:%M})"
            )
        return self


class InputError(ValueError):
    """Bad usage or bad input: the command is refused, nothing is written (CLI exit code 2)."""


class ValidateConfig(BaseModel):
    """What ``fks validate`` re-validates: stored series, all of them unless filtered."""

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)


class FeaturesConfig(BaseModel):
    """What ``fks features`` builds: a named feature set over stored series (all unless filtered)."""

    model_config = ConfigDict(extra="forbid")

    symbols: Symbols = Field(default_factory=list)
    timeframe: TimeframeName = None
    feature_set: str = "default"
    batch_id: str = Field(default_factory=lambda: uuid.uuid4().hex)


SYNTHETIC_UNIVERSE: tuple[str, ...] = ("SYNA", "SYNB", "SYNC", "SYND", "SYNE", "SYNF", "SYNG", "SYNH")
"""The pipeline's offline allocator universe: eight daily equities of the seeded synthetic market."""


def _synthetic_universe_ingest() -> IngestConfig:
    return IngestConfig(
        source=Source.SYNTHETIC,
        symbols=list(SYNTHETIC_UNIVERSE),
        timeframe="1d",
        asset_class=AssetClass.EQUITY,
        start=datetime(2015, 1, 1),
        end=datetime(2024, 1, 1),
        seed=7,
    )


class AllocatorStageConfig(BaseModel):
    """The pipeline's allocator stage: a universe of daily assets, ingested, then the allocator
    trained on it (``fks train allocator``). Offline by default: the eight equities of the seeded
    synthetic market (:data:`SYNTHETIC_UNIVERSE`, seed 7, 2015 to 2023 on the XNYS calendar),
    labelled ``source`` (``synthetic``) in the summary and on the MLflow run."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    source: str = "synthetic (seeded market, seed 7)"
    ingest: IngestConfig = Field(default_factory=_synthetic_universe_ingest)
    train: AllocatorConfig = Field(
        default_factory=lambda: AllocatorConfig(symbols=SYNTHETIC_UNIVERSE, timesteps=30_000, seeds=(7,))
    )

    @model_validator(mode="after")
    def _universe(self) -> AllocatorStageConfig:
        if self.enabled and len(self.train.symbols) < 5:
            raise ValueError("the pipeline's allocator stage needs a universe of at least five assets")
        if self.ingest.symbols and set(self.train.symbols) - set(self.ingest.symbols):
            missing = sorted(set(self.train.symbols) - set(self.ingest.symbols))
            raise ValueError(f"the allocator stage trains on {missing}, which its ingest does not load")
        return self


class PipelineConfig(BaseModel):
    """The main job, ``fks pipeline``: every stage on the shipped sample data, then the allocator
    stage on its universe (:class:`AllocatorStageConfig`)."""

    model_config = ConfigDict(extra="forbid")

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    forecaster: ForecasterConfig = Field(default_factory=lambda: ForecasterConfig(symbol="SPX", epochs=20))
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    allocator: AllocatorStageConfig = Field(default_factory=AllocatorStageConfig)
