"""Policy of the online market-data providers (``config/providers.yaml``).

Which provider is asked first for each asset class, how fast each may be called (a token bucket
whose defaults are the provider's documented free-tier limits), its credit budget per day or
month where it has one, retries, the circuit breaker, the response cache, and how fetched bars
are cross-checked against a second source.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.assets import AssetClass

ONLINE_PROVIDERS: tuple[str, ...] = (
    "binance",
    "yahoo",
    "polygon",
    "alphavantage",
    "coingecko",
    "coinmarketcap",
    "sec_edgar",
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateLimit(_Strict):
    """At most ``requests`` per ``per_seconds`` on average, ``burst`` at once (default: ``requests``)."""

    requests: float = Field(gt=0)
    per_seconds: float = Field(gt=0)
    burst: float | None = Field(default=None, ge=1)

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.requests / self.per_seconds

    @property
    def capacity(self) -> float:
        """Bucket size: the most requests sent back to back."""
        return self.burst if self.burst is not None else max(1.0, self.requests)


class Budget(_Strict):
    """A credit allowance that resets every calendar ``period`` (UTC)."""

    credits: int = Field(gt=0)
    period: Literal["day", "month"] = "month"


class RetryPolicy(_Strict):
    """Retries of one request: exponential backoff ``base_s * 2**n`` capped at ``max_s``, with
    ``jitter`` (a fraction of the delay drawn at random); a server's ``Retry-After`` wins when
    longer, up to ``max_retry_after_s`` (beyond it the request fails over instead of waiting)."""

    attempts: int = Field(default=3, ge=1)
    base_s: float = Field(default=0.5, ge=0)
    max_s: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.25, ge=0, le=1)
    max_retry_after_s: float = Field(default=60.0, ge=0)


class BreakerPolicy(_Strict):
    """Circuit breaker: ``failure_threshold`` failures in a row open it; after ``reset_timeout_s``
    one trial call is let through (half-open); ``half_open_successes`` successes close it again."""

    failure_threshold: int = Field(default=3, ge=1)
    reset_timeout_s: float = Field(default=60.0, ge=0)
    half_open_successes: int = Field(default=1, ge=1)


class ProviderPolicy(_Strict):
    """How one provider is called."""

    enabled: bool = True
    rate: RateLimit
    budget: Budget | None = None
    timeout_s: float = Field(default=10.0, gt=0)
    cache_ttl_s: float = Field(default=60.0, ge=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    max_rows_per_request: int | None = Field(default=None, ge=1)


class OnDiscrepancy(StrEnum):
    """What to do when the second source disagrees beyond the tolerance."""

    WARN = "warn"
    PREFER_PRIMARY = "prefer_primary"
    FAIL = "fail"


class VerificationPolicy(_Strict):
    """Cross-verification: the last ``bars`` fetched are compared with a second source on
    ``fields``; a relative difference above ``tolerance`` is a discrepancy."""

    enabled: bool = True
    bars: int = Field(default=5, ge=1)
    tolerance: float = Field(default=0.005, gt=0)
    fields: tuple[str, ...] = ("close",)
    on_discrepancy: OnDiscrepancy = OnDiscrepancy.WARN


class ProvidersConfig(_Strict):
    """The whole ``providers.yaml``."""

    priority: dict[AssetClass, list[str]]
    providers: dict[str, ProviderPolicy]
    verification: VerificationPolicy = Field(default_factory=VerificationPolicy)
    backfill_chunk: dict[str, str] = Field(default_factory=lambda: {"1m": "1D", "1h": "30D", "1d": "365D"})

    @model_validator(mode="after")
    def _known(self) -> ProvidersConfig:
        unknown = sorted(set(self.providers) - set(ONLINE_PROVIDERS))
        for chain in self.priority.values():
            unknown += [p for p in chain if p not in self.providers]
        if unknown:
            raise ValueError(
                f"unknown provider(s) {', '.join(sorted(set(unknown)))}: "
                f"each must be one of {', '.join(ONLINE_PROVIDERS)} and have an entry under 'providers'"
            )
        return self

    def chain(self, asset_class: AssetClass | str) -> list[str]:
        """Enabled providers for ``asset_class`` in priority order."""
        names = self.priority.get(AssetClass(asset_class), [])
        return [n for n in names if self.providers[n].enabled]


def load_providers_config(path: Path) -> ProvidersConfig:
    """Read ``providers.yaml``.

    Raises:
        ValueError: when the file is missing, not YAML, or invalid; the message names the file.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(
            f"{path}: providers file not found; set FKS_PROVIDERS_FILE to an existing file"
        ) from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    try:
        return ProvidersConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid providers policy: {exc}") from None
