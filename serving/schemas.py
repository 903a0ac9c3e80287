"""Request and response bodies of the REST service (pydantic v2), in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SERIES = 64
"""Most series one forecast request may carry."""

MAX_BARS = 10_000
"""Most bars one series of a request may carry."""


class Bar(BaseModel):
    """One raw OHLCV bar: ``ts`` is its open time (ISO 8601; naive means UTC)."""

    model_config = ConfigDict(extra="forbid")

    ts: datetime
    open: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    close: float = Field(gt=0, allow_inf_nan=False)
    volume: float = Field(ge=0, allow_inf_nan=False)


class SeriesRequest(BaseModel):
    """One series to forecast: its raw bars, or none to use the latest bars stored in FKS."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.\-_=^:/]+$")
    bars: list[Bar] | None = Field(default=None, max_length=MAX_BARS)

    @field_validator("bars")
    @classmethod
    def _increasing(cls, bars: list[Bar] | None) -> list[Bar] | None:
        if bars is None:
            return None
        for i in range(1, len(bars)):
            if bars[i].ts <= bars[i - 1].ts:
                raise ValueError(
                    f"bar times must increase: bar {i} ({bars[i].ts.isoformat()}) is not after bar {i - 1} "
                    f"({bars[i - 1].ts.isoformat()}); send bars oldest first, one per open time"
                )
        return bars


class ForecastRequest(BaseModel):
    """``POST /v1/forecast``: one or many series for one registered model."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="fks-forecaster", min_length=1, description="Registered model name.")
    series: list[SeriesRequest] = Field(min_length=1, max_length=MAX_SERIES)


class Forecast(BaseModel):
    """The forecast for one series' last bar."""

    symbol: str
    ts: str = Field(description="Open time of the bar the forecast is made at (ISO 8601 UTC).")
    forecast_log_return: float
    prob_up: float
    horizon: int


class ForecastResponse(BaseModel):
    """``POST /v1/forecast`` answer."""

    request_id: str
    model: str
    version: str
    alias: str
    forecasts: list[Forecast]


class ModelInfo(BaseModel):
    """``GET /v1/models``: one loaded model version."""

    name: str
    version: str
    alias: str
    run_id: str
    data_window: str | None
    feature_set_version: str | None
    metrics: dict[str, float]
    min_bars: int | None
    loaded_at: str
    load_seconds: float
    registered_at: str | None = Field(
        default=None,
        description="When this version was registered (ISO 8601 UTC), for the desk's stale-model check.",
    )


class Error(BaseModel):
    """Every error answer: what was wrong and how to fix it."""

    error: str
    detail: Any = None


class ExplainRequest(BaseModel):
    """``POST /v1/explain``: why the model forecasts what it does for one series' last bar."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="fks-forecaster", min_length=1, description="Registered model name.")
    series: SeriesRequest
    top_k: int = Field(default=10, ge=1, le=100, description="Features to name, largest |attribution| first.")


class Attribution(BaseModel):
    """One feature's signed SHAP attribution, in log-return units (summed over the window)."""

    feature: str
    shap: float


class ExplainResponse(BaseModel):
    """``POST /v1/explain`` answer: ``base_value + sum(all attributions) ~= forecast_log_return``
    (expected gradients: up to Monte Carlo error); ``rest`` is the sum of the features not named."""

    request_id: str
    model: str
    version: str
    alias: str
    symbol: str
    ts: str
    forecast_log_return: float
    base_value: float
    attributions: list[Attribution]
    rest: float


class FeatureDriftOut(BaseModel):
    """One feature's drift: PSI, Kolmogorov-Smirnov statistic and p-value, and the verdict."""

    feature: str
    n_served: int
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    verdict: str


class DriftResponse(BaseModel):
    """``GET /v1/drift`` answer: served inputs of a recent window against the training span."""

    model: str
    version: str
    window_start: str
    window_end: str
    n_served: int
    verdict: str
    thresholds: dict[str, float]
    features: list[FeatureDriftOut]


class AllocateRequest(BaseModel):
    """``POST /v1/allocate``: target weights for a universe from a registered allocator."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="fks-allocator", min_length=1, description="Registered allocator name.")
    universe: list[SeriesRequest] = Field(
        min_length=1,
        max_length=MAX_SERIES,
        description="Every asset of the model's universe, with its bars or not.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Current weight per symbol (missing: 0; the rest is cash).",
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        for symbol, w in weights.items():
            if not (-1.0 <= w <= 1.0):
                raise ValueError(
                    f"weight of {symbol!r} is {w}; weights are fractions of the account in [-1, 1]"
                )
        gross = sum(abs(w) for w in weights.values())
        if gross > 1.0 + 1e-9:
            raise ValueError(f"the weights' absolute sum is {gross:.6g}; it must be at most 1 (no leverage)")
        return weights


class Weight(BaseModel):
    """One asset's (or ``CASH``'s) target weight."""

    symbol: str
    weight: float


class AllocateResponse(BaseModel):
    """``POST /v1/allocate`` answer: the target weights decided at the close of bar ``ts``."""

    request_id: str
    model: str
    version: str
    alias: str
    ts: str | None
    weights: list[Weight]
