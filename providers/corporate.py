"""Corporate actions from the online providers: building splits from a provider's numbers, and
fetching a symbol's splits through the provider manager into the ``corporate_actions`` table.

``fks ingest`` calls :func:`fetch_and_store_splits` after an online fetch of an equity or ETF, so
the store learns the splits over every ingested range; a failure there is a warning, never a
failed ingestion. The recorded splits tell a split from a data error (a halved price on the
ex-date) and back-adjust history (:func:`market.adjust.apply_splits`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, Engine

from config.assets import AssetClass
from market.bars import as_utc
from providers.base import BadResponse
from storage.corporate_actions import SPLIT, CorporateAction, upsert_corporate_actions

if TYPE_CHECKING:
    from providers.manager import Attempt, ProviderManager

log = logging.getLogger(__name__)

# Asset classes whose shares split; other classes are not asked (no request is made).
SPLIT_ASSET_CLASSES: frozenset[AssetClass] = frozenset({AssetClass.EQUITY, AssetClass.ETF})


def _positive(value: Any) -> float | None:
    """``value`` as a positive finite float, or None (missing, not a number, zero, negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def split_action(
    provider: str, symbol: str, ex_date: pd.Timestamp, new: Any, old: Any, row: Any
) -> CorporateAction:
    """The split of ``symbol`` effective ``ex_date`` giving ``new`` shares for every ``old`` one,
    as reported by ``provider`` (``row`` is the provider's record, quoted in errors).

    Raises:
        BadResponse: when ``new`` or ``old`` is missing, not a number, zero or negative.
    """
    shares, per = _positive(new), _positive(old)
    if shares is None or per is None:
        raise BadResponse(
            f"{provider}: the split of {symbol!r} on {ex_date:%Y-%m-%d} has no valid ratio "
            f"({str(row)[:160]}): both share counts must be positive numbers"
        )
    return CorporateAction(symbol, ex_date, SPLIT, shares / per, provider)


def in_range(actions: list[CorporateAction], start: pd.Timestamp, end: pd.Timestamp) -> list[CorporateAction]:
    """``actions`` with ``start <= ex_date < end``, sorted by ex-date."""
    lo, hi = as_utc(start, "start"), as_utc(end, "end")
    return sorted((a for a in actions if lo <= a.ex_date < hi), key=lambda a: a.ex_date)


@dataclass
class SplitsOutcome:
    """What :func:`fetch_and_store_splits` did: the ``actions`` found in the range, ``stored`` rows
    inserted or changed, the ``provider`` that answered (None when none was asked or none
    answered), the providers that failed before it (``attempts``) and ``warning`` (None when
    all went well)."""

    actions: list[CorporateAction] = field(default_factory=list)
    stored: int = 0
    provider: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    warning: str | None = None

    @property
    def warnings(self) -> list[str]:
        """``warning`` as a list (empty when there is none)."""
        return [self.warning] if self.warning else []


def fetch_and_store_splits(
    manager: ProviderManager,
    store: Engine | Connection,
    symbol: str,
    asset_class: AssetClass | str,
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    *,
    prefer: str | None = None,
) -> SplitsOutcome:
    """Fetch the splits of ``symbol`` with ``start's date <= ex_date < end`` (``end`` None: now)
    through ``manager`` and upsert them into ``corporate_actions``.

    Only equities and ETFs are asked (:data:`SPLIT_ASSET_CLASSES`); for another class nothing is
    requested. ``store`` is an engine (the splits are written in their own short transaction,
    after the fetch) or a connection whose transaction the caller owns (on SQLite, do not hold a
    write lock on it while calling: the manager meters each request in its own transaction).
    Never raises for a provider or storage failure: the outcome's ``warning`` says what went
    wrong (and it is logged), so the caller's ingestion goes on.
    """
    if AssetClass(asset_class) not in SPLIT_ASSET_CLASSES:
        return SplitsOutcome()
    try:
        hi = pd.Timestamp(manager.wall_clock(), unit="s", tz="UTC") if end is None else as_utc(end, "end")
        lo = as_utc(start, "start").floor("D")  # ex-dates are dates: the first bar's session counts
        result = manager.fetch_splits(symbol, asset_class, lo, hi, prefer=prefer)
        if isinstance(store, Engine):
            with store.begin() as conn:
                stored = upsert_corporate_actions(conn, result.actions)
        else:
            stored = upsert_corporate_actions(store, result.actions)
    except Exception as exc:  # splits are extra: their failure must not fail the bars' ingestion
        warning = f"{symbol}: splits not updated: {type(exc).__name__}: {exc}"
        log.warning("%s", warning)
        return SplitsOutcome(warning=warning)
    return SplitsOutcome(result.actions, stored, result.provider, result.attempts)
