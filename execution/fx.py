"""Prices and FX rates from the stored bars, without look-ahead: the close of the last bar
*completed* at or before a time, and the factor that turns an amount in one currency into another.

::

    last_close(engine, "SPY", "2024-01-03T00:00Z")          # Quote of the last bar closed by then
    fx_rate(engine, "EUR", "USD", "2024-01-03T00:00Z")      # USD per EUR (EURUSD, else 1 / USDEUR)

**Prices and their time.** A bar's ``ts`` is its *open* time (the bar contract), so its close is
known only at ``ts + timeframe`` (the nominal bar length: a day for ``1d``). The price of a
symbol at ``at`` is the close of its last bar *completed* at or before ``at``
(``ts + timeframe <= at``): a bar still open at ``at``, or any later bar, is never used. With no
``timeframe`` given, every stored timeframe of the symbol is looked at and the most recently
completed bar wins (the finer timeframe on a tie).

**FX rule.** ``fx_rate(engine, "EUR", "USD", at)`` is the price (as above) of the pair
``EURUSD`` if it is stored (multiply), else ``1 / price`` of ``USDEUR`` (the inverse pair), else
:class:`MissingFxRate`, which names the pair to ingest (``fks ingest --symbols EURUSD``). The
same currency converts at 1.

Used by :mod:`execution.portfolio` (valuation) and :mod:`execution.oms` (each fill of an asset
quoted in another currency than the account's is booked at the rate of its time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from market.bars import Timeframe, as_utc
from storage.schema import BarRow

_T = TypeVar("_T")
_BARS = BarRow.__table__
_FINEST_FIRST = (Timeframe.M1, Timeframe.H1, Timeframe.D1)


class MissingFxRate(LookupError):
    """No stored FX bar converts one currency into another at the time asked: neither the pair
    nor its inverse has a bar completed by then. The message names the pair to ingest."""


@dataclass(frozen=True)
class Quote:
    """The close of one stored bar: ``symbol``'s bar of ``timeframe`` that opened at ``ts`` (UTC)
    and closed at ``closed_at = ts + timeframe``, at price ``close`` (quote currency)."""

    symbol: str
    timeframe: str
    ts: pd.Timestamp
    close: float

    @property
    def closed_at(self) -> pd.Timestamp:
        """When the bar's close became known: ``ts`` plus the nominal bar length."""
        return self.ts + Timeframe.parse(self.timeframe).delta


def _ms(value: pd.Timestamp) -> int:
    return int(value.value // 1_000_000)


def _conn_call(conn_or_engine: Connection | Engine, body: Callable[[Connection], _T]) -> _T:
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return body(conn)
    return body(conn_or_engine)


def _last_quote(conn: Connection, symbol: str, at: pd.Timestamp, timeframe: str | None) -> Quote | None:
    frames = _FINEST_FIRST if timeframe is None else (Timeframe.parse(timeframe),)
    best: Quote | None = None
    for tf in frames:
        cutoff = _ms(at - tf.delta)  # the bar's close time ts + delta must be <= at
        row = conn.execute(
            select(_BARS.c.ts, _BARS.c.close)
            .where(_BARS.c.symbol == symbol, _BARS.c.timeframe == tf.value, _BARS.c.ts <= cutoff)
            .order_by(_BARS.c.ts.desc())
            .limit(1)
        ).first()
        if row is None:
            continue
        quote = Quote(symbol, tf.value, pd.Timestamp(int(row.ts), unit="ms", tz="UTC"), float(row.close))
        if best is None or quote.closed_at > best.closed_at:
            best = quote
    return best


def last_close(
    conn_or_engine: Connection | Engine,
    symbol: str,
    at: pd.Timestamp | str | None = None,
    *,
    timeframe: str | None = None,
) -> Quote | None:
    """The close of ``symbol``'s last stored bar completed at or before ``at`` (default: now),
    of ``timeframe`` or, when None, of whichever stored timeframe completed a bar last; None
    when there is none. Never a bar that closes after ``at`` (see the module documentation).

    Raises:
        ValueError: an unknown timeframe or a bad ``at``.
    """
    when = pd.Timestamp.now(tz="UTC") if at is None else as_utc(at, "at")
    return _conn_call(conn_or_engine, lambda conn: _last_quote(conn, symbol, when, timeframe))


def _currency(code: str, what: str) -> str:
    value = code.strip().upper() if isinstance(code, str) else ""
    if len(value) != 3 or not value.isascii() or not value.isalpha():
        raise ValueError(f"{what} {code!r} must be a three-letter ISO 4217 code such as USD or EUR")
    return value


def _first_bar(conn: Connection, symbol: str, timeframe: str | None) -> pd.Timestamp | None:
    query = select(func.min(_BARS.c.ts)).where(_BARS.c.symbol == symbol)
    if timeframe is not None:
        query = query.where(_BARS.c.timeframe == Timeframe.parse(timeframe).value)
    first = conn.execute(query).scalar()
    return None if first is None else pd.Timestamp(int(first), unit="ms", tz="UTC")


def _fx_quote(
    conn: Connection, currency: str, base: str, at: pd.Timestamp, timeframe: str | None
) -> tuple[Quote, bool]:
    """The stored bar whose close converts ``currency`` into ``base`` at ``at`` (the FX rule), and
    whether it is the inverse pair's (its close divides instead of multiplying)."""
    direct, inverse = f"{currency}{base}", f"{base}{currency}"
    quote = _last_quote(conn, direct, at, timeframe)
    if quote is not None:
        return quote, False
    quote = _last_quote(conn, inverse, at, timeframe)
    if quote is not None:
        return quote, True
    firsts = [(s, t) for s in (direct, inverse) if (t := _first_bar(conn, s, timeframe)) is not None]
    every = "" if timeframe is None else f" {timeframe}"
    if firsts:
        stored = "; ".join(f"{s} bars start at {t}" for s, t in firsts)
        detail = f"no{every} bar of {direct} or {inverse} closed at or before {at} ({stored})"
    else:
        detail = f"neither {direct} nor {inverse} has{every} bars stored"
    raise MissingFxRate(
        f"cannot convert {currency} into {base} at {at}: {detail}; ingest {direct} or {inverse} "
        f"bars covering that time, e.g. `fks ingest --symbols {direct}`"
    )


def _fx(conn: Connection, currency: str, base: str, at: pd.Timestamp, timeframe: str | None) -> float:
    quote, inverse = _fx_quote(conn, currency, base, at, timeframe)
    return 1.0 / quote.close if inverse else quote.close


def fx_rate(
    conn_or_engine: Connection | Engine,
    currency: str,
    base: str,
    at: pd.Timestamp | str | None = None,
    *,
    timeframe: str | None = None,
) -> float:
    """The factor that converts an amount in ``currency`` into ``base`` at ``at`` (default now):
    the close of the last completed ``f"{currency}{base}"`` bar, else ``1 /`` that of
    ``f"{base}{currency}"``; 1.0 when the currencies are the same. Only bars completed at or
    before ``at`` are used (``timeframe``: one timeframe only; None: the latest of any).

    Units: ``base`` per one ``currency`` (EUR -> USD at 1.10 means 1 EUR = 1.10 USD).

    Raises:
        MissingFxRate: neither pair has a bar completed at or before ``at``; the message names
            the pair to ingest.
        ValueError: a currency that is not a three-letter code, an unknown timeframe or a bad ``at``.
    """
    cur, bas = _currency(currency, "currency"), _currency(base, "base currency")
    if cur == bas:
        return 1.0
    when = pd.Timestamp.now(tz="UTC") if at is None else as_utc(at, "at")
    return _conn_call(conn_or_engine, lambda conn: _fx(conn, cur, bas, when, timeframe))
