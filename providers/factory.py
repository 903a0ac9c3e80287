"""Build a provider from a source name and its options (as stored in the asset registry)."""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import SecretStr

from config.providers import ONLINE_PROVIDERS, ProviderPolicy
from providers.base import NotSupported, Provider
from providers.http import Gate, HttpClient

if TYPE_CHECKING:
    import httpx

    from config.settings import Settings
    from providers.online import OnlineProvider

OFFLINE_SOURCES = ("csv", "synthetic")

# provider name -> "module:class" of its adapter (imported only when used)
ADAPTERS: dict[str, str] = {
    "binance": "providers.binance:BinanceProvider",
    "yahoo": "providers.yahoo:YahooProvider",
    "polygon": "providers.polygon:PolygonProvider",
    "alphavantage": "providers.alphavantage:AlphaVantageProvider",
    "coingecko": "providers.coingecko:CoinGeckoProvider",
    "coinmarketcap": "providers.coinmarketcap:CoinMarketCapProvider",
    "sec_edgar": "providers.sec_edgar:SecEdgarProvider",
}


def adapter_class(name: str) -> type[OnlineProvider]:
    """The adapter class of the online provider ``name``.

    Raises:
        NotSupported: for an unknown provider; the message lists the known ones.
    """
    target = ADAPTERS.get(name)
    if target is None:
        raise NotSupported(f"unknown provider {name!r}: use one of {', '.join(ONLINE_PROVIDERS)}")
    module, _, cls = target.partition(":")
    found: type[OnlineProvider] = getattr(importlib.import_module(module), cls)
    return found


def build_adapter(
    name: str,
    settings: Settings,
    policy: ProviderPolicy,
    *,
    api_key: SecretStr | None = None,
    gate: Gate | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    transport: httpx.BaseTransport | None = None,
) -> OnlineProvider:
    """The adapter of provider ``name`` talking to ``FKS_<NAME>_BASE_URL``, with the policy's
    timeout, retries and cache, behind ``gate`` (rate limit and accounting).

    ``api_key`` defaults to ``FKS_<NAME>_API_KEY``; its value is registered as a secret of the
    client so it is redacted from every message. SEC EDGAR gets ``FKS_SEC_EDGAR_USER_AGENT`` as
    its User-Agent.
    """
    cls = adapter_class(name)
    key = api_key if api_key is not None else settings.provider_api_key(name)
    headers = {"Accept": "application/json"}
    if name == "sec_edgar" and settings.sec_edgar_user_agent:
        headers["User-Agent"] = settings.sec_edgar_user_agent
    client = HttpClient(
        name,
        settings.provider_base_url(name),
        timeout=policy.timeout_s,
        headers=headers,
        secrets=[key.get_secret_value()] if key is not None else [],
        retry=policy.retry,
        cache_ttl_s=policy.cache_ttl_s,
        gate=gate,
        sleep=sleep,
        rng=rng,
        clock=clock,
        transport=transport,
    )
    return cls(client, key)


def resolve_sample_path(path: str | Path, samples_dir: Path) -> Path:
    """An absolute path for ``path``: as given when absolute, else relative to ``samples_dir``."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else samples_dir / candidate


def build_provider(
    source: str, options: Mapping[str, Any], *, samples_dir: Path, strict: bool = True
) -> Provider:
    """Construct the provider called ``source`` with its ``options``.

    ``csv`` takes ``path`` (absolute, or relative to ``samples_dir``), ``date_format`` and
    ``adjust`` (with ``strict=False`` rows that cannot become bars are skipped and listed in
    ``provider.parsed.problems`` instead of failing the file); ``synthetic`` takes ``seed``,
    ``symbols``, ``calendar`` and ``origin``.

    Raises:
        NotSupported: for a source that is not offline (online providers arrive with the
            provider manager) or unknown; the message lists the sources that work.
    """
    if source == "csv":
        from providers.csv import CsvProvider

        return CsvProvider(
            resolve_sample_path(options["path"], samples_dir),
            date_format=options.get("date_format"),
            adjust=bool(options.get("adjust", False)),
            strict=strict,
        )
    if source == "synthetic":
        from providers.synthetic import SyntheticMarket, SyntheticProvider

        market = SyntheticMarket(
            seed=int(options["seed"]),
            symbols=tuple(options["symbols"]),
            calendar=str(options["calendar"]),
            origin=pd.Timestamp(options["origin"]),
        )
        return SyntheticProvider(market)
    raise NotSupported(
        f"unknown or online source {source!r}: the sources available are {', '.join(OFFLINE_SOURCES)}"
    )
