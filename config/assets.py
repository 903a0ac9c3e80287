"""The asset registry's entries and the YAML file that seeds them (``config/assets.yaml``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class AssetClass(StrEnum):
    """Kinds of instrument; each has a default trading calendar."""

    EQUITY = "equity"
    ETF = "etf"
    INDEX = "index"
    FX = "fx"
    CRYPTO = "crypto"


DEFAULT_CALENDARS: dict[AssetClass, str] = {
    AssetClass.EQUITY: "XNYS",
    AssetClass.ETF: "XNYS",
    AssetClass.INDEX: "XNYS",
    AssetClass.FX: "24/5",
    AssetClass.CRYPTO: "24/7",
}


class AssetSpec(BaseModel):
    """One registered instrument.

    ``calendar`` is an exchange-calendars name (``XNYS``, ``XLON``, ...), ``24/5`` (FX) or
    ``24/7`` (crypto); empty means the asset class's default. ``source_options`` are handed to
    the default source (for ``csv``: ``path``, relative to the samples directory or absolute,
    and optionally ``date_format``); ``default_source: auto`` means the online providers in the
    priority order of ``config/providers.yaml``. ``provider_symbols`` names the instrument at each
    online provider (``binance: BTCUSDT``, ``coingecko: bitcoin``, ``polygon: X:BTCUSD``,
    ``sec_edgar: <CIK>``, ...); a provider without an entry is not asked for it.

    ``currency`` is the ISO 4217 code (three upper-case letters, e.g. ``USD``, ``EUR``) the
    asset's prices are quoted in; an FX pair is quoted in its second currency (``EURUSD`` in
    ``USD``). Valuations in another currency convert with the stored FX bars (see
    :func:`execution.portfolio.fx_rate`). Lower case is accepted and upper-cased.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32)
    asset_class: AssetClass = AssetClass.EQUITY
    calendar: str = ""
    timeframe: str = "1d"
    enabled: bool = True
    default_source: str = "csv"
    source_options: dict[str, Any] = Field(default_factory=dict)
    provider_symbols: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    currency: str = "USD"

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            raise ValueError(f"currency {value!r} must be a three-letter ISO 4217 code such as USD or EUR")
        return code

    @field_validator("symbol")
    @classmethod
    def _symbol_upper(cls, value: str) -> str:
        value = value.strip().upper()
        if not value or any(ch.isspace() or ch in ",;/" for ch in value):
            raise ValueError(f"symbol {value!r} must be one word without spaces, commas or slashes")
        return value

    def symbol_at(self, provider: str) -> str | None:
        """This asset's symbol at ``provider``, or None when it is not known there."""
        return self.provider_symbols.get(provider)

    def model_post_init(self, context: Any, /) -> None:
        """Fill the calendar from the asset class when none was given."""
        if not self.calendar:
            object.__setattr__(self, "calendar", DEFAULT_CALENDARS[self.asset_class])


def load_asset_specs(path: Path) -> list[AssetSpec]:
    """Read the asset registry file.

    Raises:
        ValueError: when the file is missing, is not YAML, or an entry is invalid; the message
            names the file and the entry.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ValueError(
            f"{path}: asset registry not found; set FKS_ASSETS_FILE to an existing file"
        ) from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    entries = raw.get("assets", []) if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a top-level 'assets:' list")
    specs: list[AssetSpec] = []
    for i, entry in enumerate(entries, start=1):
        try:
            specs.append(AssetSpec.model_validate(entry))
        except ValidationError as exc:
            raise ValueError(f"{path}: asset #{i} is invalid: {exc}") from None
    return specs
