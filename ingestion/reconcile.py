"""Bars that heal: provisional bars from fallback providers, re-read from the primary when it is back.

Every stored bar keeps the source that wrote it. For an online asset, the **primary** is the first
provider of its chain (``providers.yaml``'s priority for its asset class, among the providers the
asset names a symbol at, that serve the timeframe). A bar written by another online provider
(a failover while the primary was down, or ``--source yahoo``) is **provisional**: it is kept, but
when the primary answers again its bars replace it.

* :class:`HealingWriter` is how online ingestion, backfill and reconciliation write bars: before
  the upsert it finds the stored bars of another source whose values the new ones change and
  records each in ``bar_replacements`` (old values, old and new source, the largest relative
  difference), in the same transaction.
* :func:`hold_disputed` keeps a bar already recorded as discrepant from being overwritten by the
  source it disagreed with, unless that source is the primary or the fetch's own cross-check
  verified the bar against a third source.
* :func:`reconcile_series` re-reads a series' provisional ranges from the primary only (no
  failover: the point is the primary's answer), screens them with the ``bars`` suite like any
  ingestion, and writes them through a :class:`HealingWriter`. A primary that is still down leaves
  the bars provisional; the next run tries again. :func:`ingestion.ingest.ingest_target` runs it
  after each ingest the primary answered, ``fks backfill --reconcile`` after a backfill, and
  ``fks reconcile`` on demand or on a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel
from sqlalchemy import Connection, Engine

from config.assets import AssetSpec
from config.settings import Settings
from expectations.screening import screen_incoming, store_screened
from market.bars import Timeframe
from providers.base import NotSupported, ProviderError
from providers.factory import ADAPTERS
from storage.assets import get_asset
from storage.bars import UpsertResult, bars_from_sources, read_bars_with_source, upsert_bars
from storage.replacements import record_replacements, replaced_bars
from storage.verifications import disputed_bars

if TYPE_CHECKING:
    from providers.manager import ProviderManager
    from providers.verify import VerificationOutcome

JOIN_BARS = 1000
"""Provisional bars less than this many bars apart are re-read in one window (one request or page)."""

ManagerFactory = Callable[[], "ProviderManager"]


def primary_provider(manager: ProviderManager, asset: AssetSpec, timeframe: str) -> str | None:
    """The asset's primary for ``timeframe``: the first provider of its chain, or None when no
    provider of the chain knows it (an offline asset)."""
    try:
        chain = manager.chain(asset, timeframe)
    except NotSupported:
        return None
    return chain[0][0] if chain else None


def provisional_sources(primary: str) -> list[str]:
    """The sources whose bars are provisional for an asset whose primary is ``primary``: every
    other online provider. Files, the simulator and derived bars (``derived:1m``) are not."""
    return sorted(name for name in ADAPTERS if name != primary)


class HealingWriter:
    """Writes bars from ``source`` (the ``write`` of :func:`expectations.screening.store_screened`)
    and records in ``bar_replacements`` each stored bar of another source whose values change.

    ``replaced`` counts the replacements recorded by this writer so far.
    """

    def __init__(
        self, symbol: str, timeframe: str, source: str, *, trigger: str, batch_id: str | None
    ) -> None:
        self.symbol = symbol
        self.timeframe = Timeframe.parse(timeframe).value
        self.source = source
        self.trigger = trigger
        self.batch_id = batch_id
        self.replaced = 0

    def __call__(self, conn: Connection, bars: pd.DataFrame) -> UpsertResult:
        """Record the replacements ``bars`` make, then upsert them, on ``conn``'s transaction."""
        if len(bars):
            index = pd.DatetimeIndex(bars.index)
            stored = read_bars_with_source(
                conn, self.symbol, self.timeframe, index[0], index[-1] + Timeframe.parse(self.timeframe).delta
            )
            changed = replaced_bars(stored, bars, self.source)
            self.replaced += record_replacements(
                conn,
                changed,
                symbol=self.symbol,
                timeframe=self.timeframe,
                new_source=self.source,
                trigger=self.trigger,
                batch_id=self.batch_id,
            )
        return upsert_bars(conn, self.symbol, self.timeframe, bars, source=self.source)


def hold_disputed(
    engine: Engine,
    symbol: str,
    timeframe: str,
    bars: pd.DataFrame,
    source: str,
    primary: str | None,
    verification: VerificationOutcome | None = None,
) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """``bars`` (from ``source``) without the bars it must not overwrite, and the times held back.

    A stored bar is held when ``source`` is on record (``provider_discrepancies``) as disagreeing
    with the source that wrote it, ``source`` is not the asset's ``primary`` (the primary is the
    reference its provisional bars heal from), and the fetch's own cross-check did not verify that
    bar against another source (``verification`` with status ``verified`` covering it).
    """
    if not len(bars) or source == primary:
        return bars, pd.DatetimeIndex([], tz="UTC", name="ts")
    index = pd.DatetimeIndex(bars.index)
    with engine.connect() as conn:
        held = disputed_bars(
            conn, symbol, timeframe, source, index[0], index[-1] + Timeframe.parse(timeframe).delta
        )
    if len(held) and verification is not None and verification.status == "verified":
        lo, hi = verification.first_ts, verification.last_ts
        if lo is not None and hi is not None:
            held = held[(held < lo) | (held > hi)]
    if not len(held):
        return bars, held
    return bars[~index.isin(held)], held


def provisional_ranges(times: pd.DatetimeIndex, timeframe: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``[start, end)`` windows covering ``times`` (sorted bar open times): a new window starts where
    the next time is :data:`JOIN_BARS` bars or more after the last one."""
    if not len(times):
        return []
    delta = Timeframe.parse(timeframe).delta
    ranges: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    first = last = pd.Timestamp(times[0])
    for ts in times[1:]:
        ts = pd.Timestamp(ts)
        if ts - last >= delta * JOIN_BARS:
            ranges.append((first, last + delta))
            first = ts
        last = ts
    ranges.append((first, last + delta))
    return ranges


class ReconcileOutcome(BaseModel):
    """What reconciling one series did: its ``primary``, the provisional bars found (``provisional``)
    in ``ranges`` windows, how many the primary's values replaced (``healed``, each recorded in
    ``bar_replacements``), how many it confirmed (same values, now the primary's), how many stay
    provisional (``remaining``: the primary is down or lacks them, ``error`` says why) and the
    primary's bars quarantined by the ``bars`` suite."""

    symbol: str
    timeframe: str
    primary: str = ""
    provisional: int = 0
    ranges: int = 0
    healed: int = 0
    confirmed: int = 0
    remaining: int = 0
    quarantined: int = 0
    error: str = ""


def reconcile_series(
    engine: Engine,
    settings: Settings,
    symbol: str,
    timeframe: str,
    *,
    manager: ManagerFactory,
    batch_id: str | None = None,
) -> ReconcileOutcome:
    """Re-read the provisional bars of ``symbol``/``timeframe`` from the asset's primary and replace
    those whose values differ (see the module's docstring).

    The primary is asked for each provisional window alone (no failover, no cross-check: a second
    source is what wrote these bars). Its bars at the provisional times are screened with the
    ``bars`` suite (failures go to quarantine and the provisional bar stays) and written through a
    :class:`HealingWriter`, each window in one transaction. The first window the primary cannot
    deliver stops the run: the rest stay provisional, and ``error`` says why.

    Raises:
        LookupError: when ``symbol`` is not a registered asset.
    """
    tf = Timeframe.parse(timeframe).value
    outcome = ReconcileOutcome(symbol=symbol, timeframe=tf)
    with engine.connect() as conn:
        asset = get_asset(conn, symbol)
    if asset is None:
        raise LookupError(f"{symbol} is not a registered asset; add it to config/assets.yaml")
    if not asset.provider_symbols:
        return outcome  # an offline series: nothing is provisional
    providers = manager()
    primary = primary_provider(providers, asset, tf)
    if primary is None:
        return outcome
    outcome.primary = primary
    sources = provisional_sources(primary)
    with engine.connect() as conn:
        times = bars_from_sources(conn, symbol, tf, sources)
    outcome.provisional = len(times)
    windows = provisional_ranges(times, tf)
    outcome.ranges = len(windows)
    for lo, hi in windows:
        try:
            result = providers.fetch(asset, tf, lo, hi, only=primary, verify=False, batch_id=batch_id)
        except ProviderError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            break
        wanted = times[(times >= lo) & (times < hi)]
        bars = result.bars[pd.DatetimeIndex(result.bars.index).isin(wanted)]
        if not len(bars):
            continue
        screened = screen_incoming(
            engine,
            settings,
            bars,
            symbol=symbol,
            timeframe=tf,
            calendar=asset.calendar,
            asset_class=asset.asset_class.value,
            start=lo,
            run=f"reconcile {symbol} {tf} from {primary}",
        )
        writer = HealingWriter(symbol, tf, primary, trigger="reconcile", batch_id=batch_id)
        with engine.begin() as conn:
            stored = store_screened(
                conn,
                screened,
                symbol=symbol,
                timeframe=tf,
                source=primary,
                batch_id=batch_id or "reconcile",
                trigger="ingest",
                write=writer,
            )
        outcome.healed += writer.replaced
        outcome.confirmed += len(screened.good) - writer.replaced
        outcome.quarantined += stored.quarantined
    with engine.connect() as conn:
        outcome.remaining = len(bars_from_sources(conn, symbol, tf, sources))
    return outcome


def reconcile_targets(
    engine: Engine, symbols: list[str] | None = None, timeframe: str | None = None
) -> list[tuple[str, str]]:
    """``(symbol, timeframe)`` of the stored series of online assets (those with provider symbols),
    optionally only ``symbols`` and ``timeframe``, sorted.

    Raises:
        LookupError: for a named symbol that is not a registered asset.
    """
    from storage.assets import list_assets
    from storage.bars import bar_summary

    with engine.connect() as conn:
        assets = {a.symbol: a for a in list_assets(conn)}
        summary = bar_summary(conn)
    wanted = [s.strip().upper() for s in symbols or [] if s.strip()]
    unknown = [s for s in wanted if s not in assets]
    if unknown:
        raise LookupError(f"not registered: {', '.join(unknown)}; add them to config/assets.yaml")
    tf = Timeframe.parse(timeframe).value if timeframe else None
    found = []
    for symbol, series_tf in zip(summary["symbol"], summary["timeframe"], strict=True):
        asset = assets.get(symbol)
        if asset is None or not asset.provider_symbols:
            continue
        if (wanted and symbol not in wanted) or (tf and series_tf != tf):
            continue
        found.append((str(symbol), str(series_tf)))
    return sorted(found)
