"""Portfolio accounting of a paper account: prices and FX rates from the stored bars, the book
valued in one currency, the drawdown of the equity marks, and reconciliation with a broker.

::

    valuation = value_account(engine, "paper", currencies={"SAP": "EUR"})  # now, in the account's currency
    valuation.equity, valuation.unrealised_pnl, valuation.rows[0].market_value_base

    result = reconcile_and_halt(oms, broker, notify=lambda event, details: print(event, details))
    result.ok                                   # False: the account is halted, the reason names why

**Prices and their time.** A bar's ``ts`` is its *open* time (the bar contract), so its close is
known only at ``ts + timeframe`` (the nominal bar length: a day for ``1d``). The price of a
symbol at ``at`` is the close of its last bar *completed* at or before ``at``
(``ts + timeframe <= at``): a bar still open at ``at``, or any later bar, is never used (no
look-ahead). With no ``timeframe`` given, every stored timeframe of the symbol is looked at and
the most recently completed bar wins (the finer timeframe on a tie).

**FX rule.** ``fx_rate(engine, "EUR", "USD", at)`` is the factor that turns an amount in EUR into
USD at ``at``: the price (as above) of the pair ``EURUSD`` if it is stored (multiply), else
``1 / price`` of ``USDEUR`` (the inverse pair), else :class:`MissingFxRate`, which names the
pair to ingest. The same currency converts at 1.

**Valuation** (:func:`value_book`, pure): per symbol, ``market_value_base = quantity * price * fx``
and ``unrealised_pnl_base = quantity * (price - avg_cost) * fx`` (a short position has a negative
quantity: it gains when the price falls), ``realised_pnl_base = realised_pnl * fx`` (gross of
fees, as :mod:`storage.execution` keeps it, converted at today's rate). Cash and fees are in the
account's base currency. Totals: ``equity = cash + market_value``, ``gross_exposure = sum |market
value|``, ``net_exposure = sum market value``.

**Reconciliation** (:func:`reconcile`, pure): the OMS's positions and cash against the broker's
:class:`~execution.broker.AccountSnapshot`. A figure differs when
``|ours - theirs| > tolerance * max(1, |ours|, |theirs|)`` (absolute below one unit, relative
above); a symbol flat on one side and absent on the other is no difference.
:func:`reconcile_and_halt` halts the account through the OMS when anything differs and tells
``notify``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from execution.broker import AccountSnapshot, Broker
from execution.oms import OrderManager
from market.bars import Timeframe, as_utc
from storage.execution import Position, get_account, list_equity, list_positions
from storage.schema import BarRow, FillRow

DEFAULT_CURRENCY = "USD"
"""The quote currency of a symbol that ``currencies`` does not name (as :class:`config.assets.AssetSpec`)."""

CASH = "cash"
"""The name :class:`Mismatch` gives the cash line."""

_T = TypeVar("_T")
_BARS = BarRow.__table__
_FILLS = FillRow.__table__
_FINEST_FIRST = (Timeframe.M1, Timeframe.H1, Timeframe.D1)


class MissingFxRate(LookupError):
    """No stored FX bar converts one currency into another at the time asked: neither the pair
    nor its inverse has a bar completed by then. The message names the pair to ingest."""


class MissingPrice(LookupError):
    """A symbol held has no stored bar completed at or before the valuation time (or no usable
    price was given). The message says what to ingest."""


class UnknownAccount(LookupError):
    """No paper account has that name."""


# -- prices and FX ----------------------------------------------------------------------------------


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


def _fx(conn: Connection, currency: str, base: str, at: pd.Timestamp, timeframe: str | None) -> float:
    direct, inverse = f"{currency}{base}", f"{base}{currency}"
    quote = _last_quote(conn, direct, at, timeframe)
    if quote is not None:
        return quote.close
    quote = _last_quote(conn, inverse, at, timeframe)
    if quote is not None:
        return 1.0 / quote.close
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


# -- valuation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookRow:
    """One symbol of a valued book. ``quantity`` units (negative short) at average entry
    ``avg_cost`` and mark ``price`` (None for a flat position that was not priced), both in the
    symbol's ``currency``; ``fx`` converts that currency into the valuation's base; the
    ``*_base`` figures are in the base currency (``realised_pnl_base`` gross of fees)."""

    symbol: str
    quantity: float
    avg_cost: float
    price: float | None
    currency: str
    fx: float
    market_value_base: float
    unrealised_pnl_base: float
    realised_pnl_base: float


@dataclass(frozen=True)
class Valuation:
    """A book valued in ``base`` currency: its rows (by symbol, flat ones included when they
    realised anything) and totals. ``cash`` and ``fees`` (all fees paid) are in ``base``;
    ``equity = cash + market_value``; ``gross_exposure = sum |market value|``;
    ``net_exposure = sum market value``; ``realised_pnl`` is gross of fees. ``at`` is the
    valuation time when known and ``prices_as_of`` the open time of each price's bar."""

    base: str
    rows: tuple[BookRow, ...]
    cash: float
    market_value: float
    equity: float
    gross_exposure: float
    net_exposure: float
    unrealised_pnl: float
    realised_pnl: float
    fees: float
    at: pd.Timestamp | None = None
    prices_as_of: Mapping[str, pd.Timestamp] = field(default_factory=dict)

    @property
    def total_pnl(self) -> float:
        """Realised plus unrealised P&L, net of fees (base currency)."""
        return self.realised_pnl + self.unrealised_pnl - self.fees

    def to_dict(self) -> dict[str, Any]:
        """The valuation as plain JSON-ready data (timestamps as ISO strings)."""
        return {
            "base": self.base,
            "at": None if self.at is None else self.at.isoformat(),
            "cash": self.cash,
            "market_value": self.market_value,
            "equity": self.equity,
            "gross_exposure": self.gross_exposure,
            "net_exposure": self.net_exposure,
            "unrealised_pnl": self.unrealised_pnl,
            "realised_pnl": self.realised_pnl,
            "fees": self.fees,
            "total_pnl": self.total_pnl,
            "positions": [
                {**asdict(r), "price_as_of": _iso(self.prices_as_of.get(r.symbol))} for r in self.rows
            ],
        }


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat()


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def value_book(
    positions: Mapping[str, Position] | Iterable[Position],
    cash: float,
    prices: Mapping[str, float],
    currencies: Mapping[str, str],
    base: str,
    rates: Mapping[str, float],
    *,
    fees: float = 0.0,
) -> Valuation:
    """Value a book in ``base`` currency (pure: no I/O).

    Args:
        positions: the positions (e.g. ``OrderManager.positions()``); flat ones without realised
            P&L are left out of the rows.
        cash: the account's cash, in ``base``.
        prices: the mark of each symbol held, in its quote currency (flat ones may be absent).
        currencies: each symbol's quote currency; a symbol not named is in :data:`DEFAULT_CURRENCY`.
        base: the valuation currency.
        rates: currency -> factor into ``base`` (``base`` itself is 1 and may be absent).
        fees: all fees paid, in ``base``.

    Raises:
        MissingPrice: a symbol held has no positive, finite price in ``prices``.
        MissingFxRate: a currency of a symbol has no positive, finite rate in ``rates``.
        ValueError: a non-finite cash or fees, or a bad currency code.
    """
    bas = _currency(base, "base currency")
    items = positions.values() if isinstance(positions, Mapping) else positions
    rows: list[BookRow] = []
    for p in sorted(items, key=lambda p: p.symbol):
        if p.quantity == 0 and p.realised_pnl == 0:
            continue
        currency = _currency(currencies.get(p.symbol, DEFAULT_CURRENCY), f"currency of {p.symbol}")
        fx = 1.0 if currency == bas else rates.get(currency)
        if fx is None or not math.isfinite(fx) or fx <= 0:
            raise MissingFxRate(f"no usable {currency}->{bas} rate to value {p.symbol}; got {fx!r}")
        price = prices.get(p.symbol)
        if p.quantity != 0 and (price is None or not math.isfinite(price) or price <= 0):
            raise MissingPrice(f"no usable price for {p.symbol} (held: {p.quantity:g}); got {price!r}")
        mark = None if price is None else float(price)
        market_value = 0.0 if p.quantity == 0 or mark is None else p.quantity * mark * fx
        unrealised = 0.0 if p.quantity == 0 or mark is None else p.quantity * (mark - p.avg_cost) * fx
        rows.append(
            BookRow(p.symbol, p.quantity, p.avg_cost, mark, currency, float(fx), market_value, unrealised,
                    p.realised_pnl * fx)
        )  # fmt: skip
    cash_ = _finite("cash", cash)
    market_value = sum(r.market_value_base for r in rows)
    return Valuation(
        base=bas,
        rows=tuple(rows),
        cash=cash_,
        market_value=market_value,
        equity=cash_ + market_value,
        gross_exposure=sum(abs(r.market_value_base) for r in rows),
        net_exposure=market_value,
        unrealised_pnl=sum(r.unrealised_pnl_base for r in rows),
        realised_pnl=sum(r.realised_pnl_base for r in rows),
        fees=_finite("fees", fees),
    )


def value_account(
    conn_or_engine: Connection | Engine,
    account: str,
    *,
    at: pd.Timestamp | str | None = None,
    base: str | None = None,
    currencies: Mapping[str, str] | None = None,
    timeframes: Mapping[str, str] | None = None,
) -> Valuation:
    """Value ``account``'s stored book at ``at`` (default now) in ``base`` (default the account's
    currency): each position marked at its symbol's last completed close (:func:`last_close`,
    of ``timeframes[symbol]`` when given), converted by :func:`fx_rate`; cash and the fees of
    every fill converted from the account's currency.

    Raises:
        UnknownAccount: no account has that name.
        MissingPrice: a symbol held has no bar completed at or before ``at``.
        MissingFxRate: a needed rate has no stored bar at or before ``at``.
        ValueError: a bad currency code, timeframe or time.
    """
    when = pd.Timestamp.now(tz="UTC") if at is None else as_utc(at, "at")
    names = dict(currencies or {})
    frames = dict(timeframes or {})

    def body(conn: Connection) -> Valuation:
        found = get_account(conn, account)
        if found is None:
            raise UnknownAccount(
                f"no paper account {account!r}; check the name (`fks positions --account NAME`), or open "
                f"it by trading it: `fks trade --paper --account {account}` opens it on its first cycle"
            )
        bas = _currency(base or found.base_currency, "base currency")
        positions = list_positions(conn, account)
        paid = select(func.coalesce(func.sum(_FILLS.c.fee), 0.0)).where(_FILLS.c.account == account)
        fees = float(conn.execute(paid).scalar_one())
        quotes: dict[str, Quote] = {}
        for p in positions:
            if p.quantity == 0:
                continue
            quote = _last_quote(conn, p.symbol, when, frames.get(p.symbol))
            if quote is None:
                raise MissingPrice(
                    f"no {p.symbol} bar closed at or before {when} to value the position of "
                    f"{p.quantity:g}; ingest it, e.g. `fks ingest --symbols {p.symbol}`"
                )
            quotes[p.symbol] = quote
        needed = {
            _currency(names.get(p.symbol, DEFAULT_CURRENCY), f"currency of {p.symbol}")
            for p in positions
            if p.quantity != 0 or p.realised_pnl != 0
        }
        rates = {c: _fx(conn, c, bas, when, None) for c in sorted(needed) if c != bas}
        own = _currency(found.base_currency, "account currency")
        to_base = 1.0 if own == bas else _fx(conn, own, bas, when, None)
        valuation = value_book(positions, found.cash * to_base, {s: q.close for s, q in quotes.items()},
                               names, bas, rates, fees=fees * to_base)  # fmt: skip
        return replace(valuation, at=when, prices_as_of={s: q.ts for s, q in quotes.items()})

    return _conn_call(conn_or_engine, body)


# -- equity history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawdown:
    """The drawdown of an equity series (account currency): ``peak`` the highest mark (at
    ``peak_at``), ``last`` the latest (at ``last_at``), ``current = last / peak - 1`` and
    ``max`` the deepest ``equity / running peak - 1`` (fractions <= 0), over ``points`` marks."""

    points: int
    peak: float
    peak_at: pd.Timestamp
    last: float
    last_at: pd.Timestamp
    current: float
    max: float


def drawdown(equity: pd.Series) -> Drawdown | None:
    """The :class:`Drawdown` of ``equity`` (a series of marks indexed by time, oldest first);
    None when it is empty. A peak at or below 0 gives drawdowns of NaN.

    Raises:
        ValueError: a non-finite mark.
    """
    values = equity.astype(float)
    if values.empty:
        return None
    if not np.isfinite(values.to_numpy()).all():
        raise ValueError("equity marks must be finite")
    running = values.cummax()
    ratios = values / running.where(running > 0) - 1.0
    top = int(np.argmax(values.to_numpy()))
    return Drawdown(
        points=len(values),
        peak=float(values.max()),
        peak_at=pd.Timestamp(values.index[top]),
        last=float(values.iloc[-1]),
        last_at=pd.Timestamp(values.index[-1]),
        current=float(ratios.iloc[-1]),
        max=float(ratios.min()) if ratios.notna().any() else math.nan,
    )


def account_drawdown(
    conn_or_engine: Connection | Engine, account: str, *, since: pd.Timestamp | str | None = None
) -> Drawdown | None:
    """The :class:`Drawdown` of ``account``'s equity marks (table ``equity_history``, written by
    :meth:`execution.oms.OrderManager.mark_to_market`) since ``since`` (all when None); None
    when there is no mark."""
    lo = None if since is None else as_utc(since, "since")
    frame = _conn_call(conn_or_engine, lambda conn: list_equity(conn, account, since=lo))
    return drawdown(frame["equity"])


# -- reconciliation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One figure on which the OMS (``ours``) and the broker (``theirs``) differ: a symbol's
    position (units) or :data:`CASH` (account currency)."""

    symbol: str
    ours: float
    theirs: float

    @property
    def difference(self) -> float:
        """``ours - theirs``."""
        return self.ours - self.theirs

    def describe(self) -> str:
        """One line: ``SPY: ours 10, broker 12 (diff -2)``."""
        diff = f"{self.difference:+.6g}"
        return f"{self.symbol}: ours {self.ours:.10g}, broker {self.theirs:.10g} (diff {diff})"


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of :func:`reconcile`: ``ok`` when nothing differs, else the ``mismatches``
    (cash first, then symbols in order), and ``message`` for a person."""

    ok: bool
    mismatches: list[Mismatch]
    message: str
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ok, message, tolerance and each mismatch with its difference."""
        return {
            "ok": self.ok,
            "message": self.message,
            "tolerance": self.tolerance,
            "mismatches": [{**asdict(m), "difference": m.difference} for m in self.mismatches],
        }


def _differs(ours: float, theirs: float, tolerance: float) -> bool:
    return abs(ours - theirs) > tolerance * max(1.0, abs(ours), abs(theirs))


def reconcile(
    oms_positions: Mapping[str, float],
    oms_cash: float,
    broker: AccountSnapshot,
    *,
    tolerance: float = 1e-6,
) -> Reconciliation:
    """Compare the OMS's positions (units per symbol) and cash with the broker's snapshot (pure).

    A figure differs when ``|ours - theirs| > tolerance * max(1, |ours|, |theirs|)``: an absolute
    tolerance for figures below one unit, a relative one above. A symbol missing on one side
    counts as flat there, so flat positions on either side are ignored.

    Raises:
        ValueError: a negative or non-finite tolerance, or a non-finite figure.
    """
    if isinstance(tolerance, bool) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    found: list[Mismatch] = []
    ours_cash, theirs_cash = _finite("OMS cash", oms_cash), _finite("broker cash", broker.cash)
    if _differs(ours_cash, theirs_cash, tolerance):
        found.append(Mismatch(CASH, ours_cash, theirs_cash))
    for symbol in sorted(set(oms_positions) | set(broker.positions)):
        ours = _finite(f"OMS position {symbol}", oms_positions.get(symbol, 0.0))
        theirs = _finite(f"broker position {symbol}", broker.positions.get(symbol, 0.0))
        if _differs(ours, theirs, tolerance):
            found.append(Mismatch(symbol, ours, theirs))
    if not found:
        held = sum(1 for q in broker.positions.values() if q != 0)
        message = f"books agree: cash and {held} position(s) within tolerance {tolerance:g}"
    else:
        message = f"{len(found)} mismatch(es) with the broker: " + "; ".join(m.describe() for m in found)
    return Reconciliation(not found, found, message, float(tolerance))


Notify = Callable[[str, dict[str, Any]], None]
"""A notification hook: ``notify(event, details)`` (e.g. ``"halt"`` and what caused it)."""


def reconcile_and_halt(
    oms: OrderManager,
    broker: Broker,
    notify: Notify | None = None,
    *,
    tolerance: float = 1e-6,
) -> Reconciliation:
    """Reconcile ``oms``'s in-memory book (call :meth:`~execution.oms.OrderManager.recover`
    first if other processes write to the account) with ``broker.account()``. On a mismatch,
    halt the account through the OMS (``oms.halt(reason)``, audited; the reason names the
    mismatches; open orders stay) and call ``notify("halt", details)`` with ``account``,
    ``reason`` and the ``reconciliation`` (:meth:`Reconciliation.to_dict`). An account already
    halted for the very same reason is not halted or notified again.

    Raises:
        ValueError: a bad tolerance or a non-finite figure (see :func:`reconcile`).
        Whatever ``notify`` raises (after the halt was committed).
    """
    snapshot = broker.account()
    positions = {symbol: p.quantity for symbol, p in oms.positions().items()}
    result = reconcile(positions, oms.cash(), snapshot, tolerance=tolerance)
    if result.ok:
        return result
    reason = f"reconciliation: {result.message}"
    state = oms.trading_state()
    if state.halted and state.reason == reason:
        return result
    oms.halt(reason)
    if notify is not None:
        notify("halt", {"account": oms.account, "reason": reason, "reconciliation": result.to_dict()})
    return result
