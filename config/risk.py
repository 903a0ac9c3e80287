"""Pre-trade risk limits of each trading account (``config/risk.yaml``).

One file holds the limits of every account. ``accounts.default`` is complete; any other account
lists only what differs from it and inherits the rest::

    version: 1
    accounts:
      default:
        max_position_notional: 25000     # |units| * last price of one symbol, account currency
        symbol_max_position_notional: {} # per-symbol overrides of max_position_notional
        max_gross_exposure: 100000       # sum over symbols of |units| * last price
        max_net_exposure: 50000          # |sum over symbols of units * last price|
        max_order_notional: 10000        # one order's quantity * its reference price
        max_orders_per_minute: 10        # orders sent in any 60 s
        max_daily_loss: 0.03             # fraction of the start-of-day equity
        max_drawdown: 0.10               # fraction of the peak equity
        min_confidence: 0.0              # a model order's confidence must be at least this
        max_missing_bars: 1              # completed bars missing after the last bar seen
        max_model_age_days: 90           # days since the model version was registered
        max_fx_age_days: 5               # days since the FX bar converting a foreign price closed
        trade_only_in_session: true      # only while the asset's calendar has a session open
      aggressive:
        max_gross_exposure: 200000

Every limit is checked by :func:`execution.risk.check`, which explains exactly how (worst case:
open orders count as if filled). :func:`load_risk_config` reads the file and returns the frozen
:class:`RiskConfig` of one account.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_RISK_FILE = Path(__file__).resolve().parent / "risk.yaml"
DEFAULT_ACCOUNT = "default"


class RiskConfig(BaseModel):
    """The pre-trade limits of one account. Money is in the account's currency; exposures are
    marked at each symbol's last price.

    Attributes:
        account: the account these limits belong to.
        max_position_notional: the most one symbol's position may be worth either way,
            ``|units| * last price``, counting every open order of the symbol as filled (> 0).
        symbol_max_position_notional: per-symbol overrides of ``max_position_notional`` (> 0 each).
        max_gross_exposure: the most the sum over symbols of ``|units| * last price`` may reach,
            open orders counted as filled in the direction that makes it largest (> 0).
        max_net_exposure: the most ``|sum over symbols of units * last price|`` may reach, all
            open buys filled for the long side, all open sells for the short side (> 0).
        max_order_notional: the most one order may be worth, ``quantity * reference price``
            (its limit price, else its stop price, else the last price) (> 0).
        max_orders_per_minute: the most orders the account may send in any 60 seconds (>= 1).
        max_daily_loss: the largest loss since the start of the day, as a fraction of the
            start-of-day equity (in (0, 1]); beyond it only orders that reduce a position pass,
            and :func:`execution.risk.should_halt` says to halt the account.
        max_drawdown: the largest fall from the peak equity, as a fraction of the peak (in
            (0, 1]); beyond it, as for ``max_daily_loss``.
        min_confidence: the least confidence (in [0, 1]) an order from a model must carry; 0
            turns the check off.
        max_missing_bars: how many completed bars of the order's timeframe may be missing after
            the symbol's last bar (on its calendar's grid) before the data count as stale (>= 0).
        max_model_age_days: the most days since the order's model version was registered (> 0).
        max_fx_age_days: the most days since the FX bar that converts the price of a symbol quoted
            in another currency than the account's closed (> 0; 5 by default: a weekend and a
            holiday of a daily FX series).
        trade_only_in_session: refuse orders while the asset's calendar has no session open.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field(default=DEFAULT_ACCOUNT, min_length=1, max_length=64)
    max_position_notional: float = Field(gt=0, allow_inf_nan=False)
    symbol_max_position_notional: dict[str, float] = Field(default_factory=dict)
    max_gross_exposure: float = Field(gt=0, allow_inf_nan=False)
    max_net_exposure: float = Field(gt=0, allow_inf_nan=False)
    max_order_notional: float = Field(gt=0, allow_inf_nan=False)
    max_orders_per_minute: int = Field(ge=1)
    max_daily_loss: float = Field(gt=0, le=1)
    max_drawdown: float = Field(gt=0, le=1)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    max_missing_bars: int = Field(default=1, ge=0)
    max_model_age_days: float = Field(gt=0, allow_inf_nan=False)
    max_fx_age_days: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    trade_only_in_session: bool = True

    @field_validator("symbol_max_position_notional")
    @classmethod
    def _positive_overrides(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {s: v for s, v in value.items() if not 0 < v < math.inf}
        if bad:
            raise ValueError(f"every limit must be a positive number, got {bad}")
        return value

    def position_limit(self, symbol: str) -> float:
        """The position limit of ``symbol``: its override, else ``max_position_notional``."""
        return self.symbol_max_position_notional.get(symbol, self.max_position_notional)


class _RiskFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    accounts: dict[str, dict[str, Any]]


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _problems(exc: ValidationError, prefix: str) -> str:
    return "; ".join(f"{prefix}{_location(err['loc'])}: {err['msg']}" for err in exc.errors())


def load_risk_configs(path: Path | str | None = None) -> dict[str, RiskConfig]:
    """Read a risk file; ``None`` reads the shipped ``config/risk.yaml``. Returns every account's
    limits, each account other than ``default`` inheriting what it does not set from ``default``.

    Raises:
        ValueError: the file is missing, is not YAML, has no ``default`` account, or a key is
            invalid or unknown; the message names the file and the key
            (``accounts.default.max_gross_exposure``) and what is wrong with it.
    """
    file = DEFAULT_RISK_FILE if path is None else Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{file}: risk limits not found; pass an existing file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a mapping with keys version, accounts")
    try:
        parsed = _RiskFile.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{file}: invalid risk limits: {_problems(exc, '')}") from None
    if DEFAULT_ACCOUNT not in parsed.accounts:
        raise ValueError(f"{file}: accounts.{DEFAULT_ACCOUNT} is missing; it holds every limit")
    base = parsed.accounts[DEFAULT_ACCOUNT]
    configs: dict[str, RiskConfig] = {}
    problems: list[str] = []
    for name, values in parsed.accounts.items():
        if "account" in values:
            problems.append(f"accounts.{name}.account: not a limit; the account is the key {name!r}")
            continue
        merged = {**base, **values} if name != DEFAULT_ACCOUNT else dict(values)
        try:
            configs[name] = RiskConfig.model_validate({**merged, "account": name})
        except ValidationError as exc:
            problems.append(_problems(exc, f"accounts.{name}."))
    if problems:
        raise ValueError(f"{file}: invalid risk limits: {'; '.join(problems)}")
    return configs


def load_risk_config(path: Path | str | None = None, account: str = DEFAULT_ACCOUNT) -> RiskConfig:
    """The frozen limits of ``account`` from a risk file (``None``: the shipped ``config/risk.yaml``).

    Raises:
        ValueError: as :func:`load_risk_configs`, or for an account the file does not list (the
            message lists those it does).
    """
    configs = load_risk_configs(path)
    if account not in configs:
        file = DEFAULT_RISK_FILE if path is None else Path(path)
        known = ", ".join(sorted(configs))
        raise ValueError(f"{file}: no risk limits for account {account!r}; accounts: {known}")
    return configs[account]
