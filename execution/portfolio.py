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
and ``unrealised_pnl_base = market_value_base - quantity * cost_base`` (a short position has a
negative quantity: it gains when the price falls), where ``cost_base`` is the position's average
cost as the OMS booked it in the account's currency (each fill at its own FX rate, see
:mod:`execution.oms`), so the unrealised P&L includes the FX move since entry; the realised P&L is
the one booked in the account's currency (gross of fees). Both are converted from the account's
currency into the report's ``base`` at today's rate when the two differ. A position without booked
base figures (built by hand) uses ``avg_cost * fx`` and ``realised_pnl * fx``. Cash and fees are
in the account's currency, converted likewise. Totals: ``equity = cash + market_value``,
``gross_exposure = sum |market value|``, ``net_exposure = sum market value``.

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
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from execution.broker import AccountSnapshot, Broker
from execution.fx import MissingFxRate as MissingFxRate  # re-exported: valuation raises it
from execution.fx import Quote as Quote
from execution.fx import _conn_call, _currency, _fx, _last_quote
from execution.fx import fx_rate as fx_rate
from execution.fx import last_close as last_close
from execution.oms import OrderManager
from market.bars import as_utc
from storage.execution import Position, get_account, list_equity, list_positions
from storage.schema import FillRow

DEFAULT_CURRENCY = "USD"
"""The quote currency of a symbol that ``currencies`` does not name (as :class:`config.assets.AssetSpec`)."""

CASH = "cash"
"""The name :class:`Mismatch` gives the cash line."""

_FILLS = FillRow.__table__


class MissingPrice(LookupError):
    """A symbol held has no stored bar completed at or before the valuation time (or no usable
    price was given). The message says what to ingest."""


class UnknownAccount(LookupError):
    """No paper account has that name."""


# -- prices and FX ----------------------------------------------------------------------------------


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
    account_currency: str | None = None,
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
        account_currency: the currency the positions' booked ``*_base`` figures are in (the
            account's; default ``base``), converted by ``rates`` when it is not ``base``.

    Raises:
        MissingPrice: a symbol held has no positive, finite price in ``prices``.
        MissingFxRate: a currency of a symbol has no positive, finite rate in ``rates``.
        ValueError: a non-finite cash or fees, or a bad currency code.
    """
    bas = _currency(base, "base currency")
    own = bas if account_currency is None else _currency(account_currency, "account currency")
    booked = 1.0 if own == bas else rates.get(own)
    if booked is None or not math.isfinite(booked) or booked <= 0:
        raise MissingFxRate(f"no usable {own}->{bas} rate to convert the account's books; got {booked!r}")
    items = positions.values() if isinstance(positions, Mapping) else positions
    rows: list[BookRow] = []
    for p in sorted(items, key=lambda p: p.symbol):
        if p.quantity == 0 and p.realised_pnl == 0 and not p.realised_pnl_base:
            continue
        currency = _currency(currencies.get(p.symbol, DEFAULT_CURRENCY), f"currency of {p.symbol}")
        fx = 1.0 if currency == bas else rates.get(currency)
        if fx is None or not math.isfinite(fx) or fx <= 0:
            raise MissingFxRate(f"no usable {currency}->{bas} rate to value {p.symbol}; got {fx!r}")
        price = prices.get(p.symbol)
        if p.quantity != 0 and (price is None or not math.isfinite(price) or price <= 0):
            raise MissingPrice(f"no usable price for {p.symbol} (held: {p.quantity:g}); got {price!r}")
        mark = None if price is None else float(price)
        cost = p.avg_cost * fx if p.avg_cost_base is None else p.avg_cost_base * booked
        realised = p.realised_pnl * fx if p.realised_pnl_base is None else p.realised_pnl_base * booked
        market_value = 0.0 if p.quantity == 0 or mark is None else p.quantity * mark * fx
        unrealised = 0.0 if p.quantity == 0 or mark is None else market_value - p.quantity * cost
        rows.append(
            BookRow(p.symbol, p.quantity, p.avg_cost, mark, currency, float(fx), market_value, unrealised,
                    realised)
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
        paid = select(func.coalesce(func.sum(_FILLS.c.fee * _FILLS.c.fx_rate), 0.0)).where(
            _FILLS.c.account == account
        )
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
            if p.quantity != 0 or p.realised_pnl != 0 or p.realised_pnl_base
        }
        own = _currency(found.base_currency, "account currency")
        needed.add(own)
        rates = {c: _fx(conn, c, bas, when, None) for c in sorted(needed) if c != bas}
        to_base = rates.get(own, 1.0)
        valuation = value_book(positions, found.cash * to_base, {s: q.close for s, q in quotes.items()},
                               names, bas, rates, fees=fees * to_base, account_currency=own)  # fmt: skip
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
