"""Pre-trade risk: may this order go to the broker? A pure function of (order, book, limits).

:func:`check` takes an :class:`~execution.orders.OrderRequest`, a :class:`RiskState` (the book
as plain frozen values: positions, last prices, cash, open orders, recent order times, the kill
switch, last bars, model registration times, the time now) and the account's frozen
:class:`~config.risk.RiskConfig`, and returns a :class:`RiskDecision`: accepted, or refused with a
:class:`RiskCode` and a reason a person can act on (both stored on the order). No I/O, no clock:
``now`` is part of the state.

The checks, in the order they run (the first refusal is returned):

1. ``halted``: the kill switch (``fks halt``) is on; every order is refused, reductions included.
2. ``stale_data`` (no price): the symbol has no last price to value the order with.
3. ``max_notional``: ``quantity * reference price`` above ``max_order_notional``; the reference
   price is the limit price, else the stop price, else the last price.
4. ``rate_limit``: ``max_orders_per_minute`` orders already sent in ``(now - 60 s, now]``.
5. ``market_closed``: ``trade_only_in_session`` and no session of the asset's calendar is open at
   ``now`` (weekends, holidays, outside hours, lunch breaks).
6. ``stale_data``: more than ``max_missing_bars`` completed bars of the timeframe (bars of the
   calendar's grid after the symbol's last bar whose end ``ts + timeframe`` is at or before now)
   are missing, or the symbol has no bar at all.
6b. ``stale_fx``: the symbol is quoted in another currency than the account's and the FX bar that
   converts its price (``fx_closed_at``) closed more than ``max_fx_age_days`` before now.
7. ``stale_model`` and ``low_confidence``, for orders that name a ``model``: its version was
   registered more than ``max_model_age_days`` ago or its registration time is unknown; its
   ``confidence`` is missing or below ``min_confidence`` (when that is above 0). Orders without a
   model (an operator's) skip both.
8. ``daily_loss`` and ``drawdown``: ``(start-of-day equity - equity) / start-of-day equity`` above
   ``max_daily_loss``, or ``(peak - equity) / peak`` above ``max_drawdown``; only a reducing order
   (below) passes.
9. ``max_position``, ``max_gross``, ``max_net``: exposure limits, worst case (below).

At a limit is allowed, beyond it is refused (comparisons allow a relative 1e-9 for float sums).

**Worst case.** Every open order counts as if it were filled. For each symbol the position can end
anywhere in the box ``[position - open sells, position + open buys]`` whatever fills, partial fills
and cancels follow; position size, gross and net exposure are convex in the positions, so their
largest value over the box is at its corners, and that is what is checked, marked at the last
prices. Precisely, with ``up = position + open buys`` and ``lo = position - open sells`` per symbol:

* ``max_position``: a buy may not take ``up`` above 0 by more than the symbol's limit
  (``up * price <= limit`` or ``up <= 0``); a sell mirrors it with ``lo``.
* ``max_gross``: ``sum(max(up+, lo-) * price)`` over symbols may not exceed the limit, unless the
  order is *reducing*: a buy with ``up <= 0`` after it, a sell with ``lo >= 0`` after it (it only
  shrinks a position towards zero, even with every other open order of its side filled).
* ``max_net``: a buy may not take ``sum(up * price)`` above the limit, a sell may not take
  ``sum(lo * price)`` below minus the limit.

So with unchanged prices no fill can take any of these past its limit. A price move can (the
positions held are worth more); then these rules still let every reduction through and refuse
everything that would add to the excess, and :func:`orders_over_limits` names the open orders
that no longer fit at the new prices, for the flow to cancel. After that no fill takes an exposure
above ``max(limit, its value before the fill)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

import pandas as pd

from config.risk import RiskConfig
from execution._utc import utc
from execution.orders import Fill, OrderRequest, Side
from execution.sessions import always_open, session_at
from market.bars import Timeframe
from market.calendars import Calendar, CalendarSpanError, get_calendar

REL_TOL = 1e-9
"""Relative tolerance of every limit comparison (float sums of fills)."""

RATE_WINDOW = pd.Timedelta(seconds=60)
_NANOSECOND = pd.Timedelta(nanoseconds=1)
_RATE_WINDOW_NS = RATE_WINDOW.value
_DAY_NS = pd.Timedelta(days=1).value
_ACCEPTED: RiskDecision  # the one accepted decision (immutable), set below the class


class RiskCode(StrEnum):
    """Why an order was refused (stored on the order as ``reject_code``)."""

    HALTED = "halted"
    MAX_POSITION = "max_position"
    MAX_GROSS = "max_gross"
    MAX_NET = "max_net"
    MAX_NOTIONAL = "max_notional"
    RATE_LIMIT = "rate_limit"
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    LOW_CONFIDENCE = "low_confidence"
    STALE_DATA = "stale_data"
    STALE_FX = "stale_fx"
    STALE_MODEL = "stale_model"
    MARKET_CLOSED = "market_closed"


@dataclass(frozen=True)
class RiskDecision:
    """The answer of :func:`check`: ``accepted``, or ``code`` and ``reason`` of the refusal."""

    accepted: bool
    code: RiskCode | None = None
    reason: str = ""

    @classmethod
    def accept(cls) -> RiskDecision:
        """An accepted order."""
        return _ACCEPTED if cls is RiskDecision else cls(True)

    @classmethod
    def refuse(cls, code: RiskCode, reason: str) -> RiskDecision:
        """A refused order with its code and reason."""
        return cls(False, code, reason)


_ACCEPTED = RiskDecision(True)


@dataclass(frozen=True)
class OpenOrder:
    """What is left of one open order: ``remaining`` units (> 0) to buy or sell of ``symbol``.

    Raises:
        ValueError: ``remaining`` is not a positive finite number.
    """

    order_id: str
    symbol: str
    side: Side
    remaining: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.remaining) and self.remaining > 0):
            raise ValueError(
                f"open order {self.order_id}: remaining must be > 0 units, got {self.remaining!r}"
            )


def _frozen(mapping: Mapping[str, float] | None) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping or {}))


def _open(order_id: str, request: OrderRequest) -> OpenOrder:
    return OpenOrder(order_id, request.symbol, request.side, request.quantity)


@dataclass(frozen=True)
class RiskState:
    """The account as risk sees it at ``now``: plain values, no live objects.

    Attributes:
        now: the time of the check (UTC).
        cash: cash in the account's currency (negative when borrowing).
        start_of_day_equity: equity at the start of the trading day (> 0), for ``max_daily_loss``.
        peak_equity: the highest equity the account has marked (> 0), for ``max_drawdown``.
        positions: units held per symbol (negative when short).
        prices: the last price per symbol (> 0); every symbol with a position or an open order
            needs one.
        open_orders: the account's open orders, oldest first, with what remains of each.
        recent_order_times: when the account sent its recent orders (``rate_limit``).
        last_bar_ts: per symbol, the ``ts`` (open time) of the last bar received.
        model_registered_at: per ``(model, version)``, when that version was registered.
        fx_closed_at: per symbol quoted in another currency than the account's, when the FX bar
            its price is converted with closed (:meth:`execution.oms.OrderManager.fx_quote`).
        halted: the kill switch; ``halt_reason`` says why.

    Raises:
        ValueError: a price that is missing, non-positive or not finite; equities <= 0.
    """

    now: pd.Timestamp
    cash: float
    start_of_day_equity: float
    peak_equity: float
    positions: Mapping[str, float] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)
    open_orders: tuple[OpenOrder, ...] = ()
    recent_order_times: tuple[pd.Timestamp, ...] = ()
    last_bar_ts: Mapping[str, pd.Timestamp] = field(default_factory=dict)
    model_registered_at: Mapping[tuple[str, str], pd.Timestamp] = field(default_factory=dict)
    fx_closed_at: Mapping[str, pd.Timestamp] = field(default_factory=dict)
    halted: bool = False
    halt_reason: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "now", utc(self.now, "RiskState.now"))
        set_(self, "positions", _frozen(self.positions))
        set_(self, "prices", _frozen(self.prices))
        set_(self, "open_orders", tuple(self.open_orders))
        set_(self, "recent_order_times", tuple(utc(t) for t in self.recent_order_times))
        set_(self, "last_bar_ts", MappingProxyType({s: utc(t) for s, t in self.last_bar_ts.items()}))
        set_(self, "model_registered_at", MappingProxyType(dict(self.model_registered_at)))
        set_(self, "fx_closed_at", MappingProxyType({s: utc(t) for s, t in self.fx_closed_at.items()}))
        for name in ("cash", "start_of_day_equity", "peak_equity"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"RiskState.{name} must be finite, got {getattr(self, name)!r}")
        for name in ("start_of_day_equity", "peak_equity"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RiskState.{name} must be > 0, got {getattr(self, name)!r}")
        bad = {s: p for s, p in self.prices.items() if not (math.isfinite(p) and p > 0)}
        if bad:
            raise ValueError(f"RiskState.prices must be positive and finite, got {bad}")
        needed = {s for s, q in self.positions.items() if q != 0} | {o.symbol for o in self.open_orders}
        unpriced = sorted(needed - set(self.prices))
        if unpriced:
            raise ValueError(
                f"RiskState.prices has no price for {', '.join(unpriced)}, which the account holds "
                "or has open orders in; pass the last price of every such symbol"
            )

    @functools.cached_property
    def equity(self) -> float:
        """``cash + sum(units * last price)``, account currency (computed once per state: a copy
        by :meth:`_copy` changes no field it depends on and keeps it)."""
        return self.cash + sum(q * self.prices[s] for s, q in self.positions.items() if q != 0)

    def with_prices(self, prices: Mapping[str, float], now: pd.Timestamp | None = None) -> RiskState:
        """A copy marked at new last prices (merged over the old ones), optionally at a new time."""
        return replace(self, prices={**self.prices, **prices}, now=self.now if now is None else now)

    def with_order(self, order_id: str, request: OrderRequest) -> RiskState:
        """A copy with ``request`` sent now as open order ``order_id`` (and counted for the rate).

        Raises:
            ValueError: the order's symbol has no price (every open order's symbol needs one).
        """
        if request.symbol not in self.prices:
            return replace(self, open_orders=(*self.open_orders, _open(order_id, request)))  # raises
        # the rest is validated and normalised already: only the two tuples change (a desk adds
        # every order of a cycle this way; re-checking every field each time cost more than the check)
        order = _open(order_id, request)
        state = self._copy(
            open_orders=(*self.open_orders, order), recent_order_times=(*self.recent_order_times, self.now)
        )
        known = self.__dict__.get("_box")
        if known is not None:  # the worst case so far, widened by the new order (not rebuilt)
            box = known.copy()
            box.add(order, self.positions)
            state.__dict__["_box"] = box
        return state

    def without_order(self, order_id: str) -> RiskState:
        """A copy with open order ``order_id`` gone (cancelled, expired or rejected by the broker)."""
        state = self._copy(open_orders=tuple(o for o in self.open_orders if o.order_id != order_id))
        state.__dict__.pop("_box", None)  # made again from the open orders when asked
        return state

    @functools.cached_property
    def _box(self) -> _Box:
        """The positions' worst case with every open order filled (computed once per state; a
        copy by :meth:`with_order` widens it by its order; read only: a check copies it)."""
        return _Box.of(self.positions, self.open_orders)

    def _copy(self, **changes: object) -> RiskState:
        """A copy with ``changes`` to fields that need no new validation (see :meth:`with_order`),
        sharing what was computed from the fields it keeps (:attr:`equity`, the worst-case box)."""
        state = object.__new__(RiskState)
        fields = state.__dict__  # set at once (a frozen dataclass sets its fields one by one)
        fields.update(self.__dict__)
        fields.update(changes)
        return state

    def with_fill(self, fill: Fill) -> RiskState:
        """A copy after ``fill``: position and cash moved, the order's remaining reduced (gone
        once filled).

        Raises:
            ValueError: ``fill`` belongs to no open order, or fills more than the order has left.
        """
        orders: list[OpenOrder] = []
        found = False
        for order in self.open_orders:
            if order.order_id != fill.order_id:
                orders.append(order)
                continue
            found = True
            if fill.symbol != order.symbol or fill.side is not order.side:
                raise ValueError(f"fill of {fill.order_id} does not match the order's symbol and side")
            left = order.remaining - fill.quantity
            if left < -REL_TOL * order.remaining:
                raise ValueError(
                    f"fill of {fill.quantity} units overfills order {fill.order_id} ({order.remaining} left)"
                )
            if left > REL_TOL * order.remaining:
                orders.append(replace(order, remaining=left))
        if not found:
            raise ValueError(f"fill of {fill.order_id}: no such open order")
        positions = dict(self.positions)
        positions[fill.symbol] = positions.get(fill.symbol, 0.0) + fill.signed_quantity
        return replace(self, positions=positions, cash=self.cash + fill.cash_flow, open_orders=tuple(orders))


@dataclass(frozen=True)
class Exposure:
    """Exposures of a set of positions at given prices (account currency).

    Attributes:
        positions: per symbol, ``|units| * price``.
        gross: the sum of ``positions``.
        net: ``sum(units * price)`` (negative when net short).
    """

    positions: Mapping[str, float]
    gross: float
    net: float


def exposure(positions: Mapping[str, float], prices: Mapping[str, float]) -> Exposure:
    """The exposures of ``positions`` (units per symbol) marked at ``prices``.

    Raises:
        KeyError: a symbol held has no price.
    """
    per = {s: abs(q) * prices[s] for s, q in positions.items() if q != 0}
    net = sum(q * prices[s] for s, q in positions.items() if q != 0)
    return Exposure(MappingProxyType(per), sum(per.values()), net)


def _within(value: float, limit: float) -> bool:
    return value <= limit * (1.0 + REL_TOL)


def breaches(
    positions: Mapping[str, float], prices: Mapping[str, float], config: RiskConfig
) -> tuple[RiskCode, ...]:
    """The exposure limits (``max_position``, ``max_gross``, ``max_net``) that ``positions`` marked
    at ``prices`` exceed now, without open orders; empty when none is."""
    now = exposure(positions, prices)
    found: list[RiskCode] = []
    if any(not _within(v, config.position_limit(s)) for s, v in now.positions.items()):
        found.append(RiskCode.MAX_POSITION)
    if not _within(now.gross, config.max_gross_exposure):
        found.append(RiskCode.MAX_GROSS)
    if not _within(abs(now.net), config.max_net_exposure):
        found.append(RiskCode.MAX_NET)
    return tuple(found)


class _Box:
    """Per symbol, the most long (``up``) and most short (``lo``) the position can end up."""

    __slots__ = ("lo", "up")

    def __init__(self, up: dict[str, float], lo: dict[str, float]) -> None:
        self.up, self.lo = up, lo

    @classmethod
    def of(cls, positions: Mapping[str, float], orders: Iterable[OpenOrder]) -> _Box:
        box = cls({s: q for s, q in positions.items() if q != 0}, {})
        box.lo.update(box.up)
        for order in orders:
            box.add(order, positions)
        return box

    def add(self, order: OpenOrder, positions: Mapping[str, float]) -> None:
        """Widen the box by ``order`` (``positions``: what is held without open orders)."""
        up, lo, symbol = self.up, self.lo, order.symbol
        held = positions.get(symbol, 0.0)
        up.setdefault(symbol, held)
        lo.setdefault(symbol, held)
        if order.side is Side.BUY:
            up[symbol] += order.remaining
        else:
            lo[symbol] -= order.remaining

    def copy(self) -> _Box:
        return _Box(dict(self.up), dict(self.lo))

    def gross(self, prices: Mapping[str, float]) -> float:
        return sum(max(self.up[s], -self.lo[s], 0.0) * prices[s] for s in self.up)


def _exposure_refusal(
    symbol: str,
    side: Side,
    quantity: float,
    positions: Mapping[str, float],
    prices: Mapping[str, float],
    box: _Box,
    config: RiskConfig,
) -> RiskDecision | None:
    """The exposure refusal of an order of ``quantity`` units of ``symbol`` with the open
    orders' worst-case ``box`` (changed here: pass a copy), or None."""
    pos = positions.get(symbol, 0.0)
    up, lo = box.up.setdefault(symbol, pos), box.lo.setdefault(symbol, pos)
    price = prices[symbol]
    buy = side is Side.BUY
    after = up + quantity if buy else lo - quantity
    scale = abs(pos) + abs(up - pos) + abs(lo - pos) + quantity
    reducing = after <= REL_TOL * scale if buy else after >= -REL_TOL * scale

    limit = config.position_limit(symbol)
    reach = abs(after) * price
    if not reducing and not _within(reach, limit):
        return RiskDecision.refuse(
            RiskCode.MAX_POSITION,
            f"{symbol}: with every open order filled the position could reach {after:+.8g} units "
            f"= {reach:,.2f} at {price:g}, above its limit of {limit:,.2f}",
        )
    if not reducing:
        (box.up if buy else box.lo)[symbol] = after
        gross = box.gross(prices)
        if not _within(gross, config.max_gross_exposure):
            return RiskDecision.refuse(
                RiskCode.MAX_GROSS,
                f"with every open order filled the gross exposure could reach {gross:,.2f}, "
                f"above the limit of {config.max_gross_exposure:,.2f}",
            )
    if buy:
        net = sum(q * prices[s] for s, q in box.up.items() if s != symbol) + after * price
        if not _within(net, config.max_net_exposure):
            return RiskDecision.refuse(
                RiskCode.MAX_NET,
                f"with every open buy filled the net exposure could reach {net:+,.2f}, "
                f"above the limit of {config.max_net_exposure:,.2f}",
            )
    else:
        net = sum(q * prices[s] for s, q in box.lo.items() if s != symbol) + after * price
        if not _within(-net, config.max_net_exposure):
            return RiskDecision.refuse(
                RiskCode.MAX_NET,
                f"with every open sell filled the net exposure could reach {net:+,.2f}, "
                f"beyond the limit of -{config.max_net_exposure:,.2f}",
            )
    return None


def is_reducing(request: OrderRequest, state: RiskState) -> bool:
    """True when ``request`` can only shrink its symbol's position towards zero, even with every
    other open order of its side filled (a buy against a short, a sell against a long)."""
    pos = state.positions.get(request.symbol, 0.0)
    same = sum(
        o.remaining for o in state.open_orders if o.symbol == request.symbol and o.side is request.side
    )
    scale = abs(pos) + same + request.quantity
    if request.side is Side.BUY:
        return pos + same + request.quantity <= REL_TOL * scale
    return pos - same - request.quantity >= -REL_TOL * scale


def reference_price(request: OrderRequest, last_price: float) -> float:
    """The price an order's notional is measured at: its limit price, else its stop price, else
    the last price."""
    if request.limit_price is not None:
        return request.limit_price
    if request.stop_price is not None:
        return request.stop_price
    return last_price


@functools.cache
def _delta(timeframe: Timeframe) -> pd.Timedelta:
    return timeframe.delta


@functools.cache
def _days(days: float) -> pd.Timedelta:
    return pd.Timedelta(days=days)


def _missing_bars(calendar: Calendar, timeframe: Timeframe, last_ts: pd.Timestamp, now: pd.Timestamp) -> int:
    """Bars of the calendar's grid after ``last_ts`` that had ended by ``now``."""
    if now.value - _delta(timeframe).value <= last_ts.value:  # not even the next bar has ended:
        return 0  # nothing is missing
    end = now - _delta(timeframe)
    return len(calendar.bar_grid(timeframe, last_ts + _NANOSECOND, end + _NANOSECOND))


def _loss_refusal(state: RiskState, config: RiskConfig) -> RiskDecision | None:
    equity = state.equity
    loss = (state.start_of_day_equity - equity) / state.start_of_day_equity
    if not _within(loss, config.max_daily_loss):
        return RiskDecision.refuse(
            RiskCode.DAILY_LOSS,
            f"the day's loss is {loss:.4%} of the start-of-day equity "
            f"({state.start_of_day_equity:,.2f} -> {equity:,.2f}), beyond the limit of "
            f"{config.max_daily_loss:.4%}; only orders that reduce a position pass",
        )
    drawdown = (state.peak_equity - equity) / state.peak_equity
    if not _within(drawdown, config.max_drawdown):
        return RiskDecision.refuse(
            RiskCode.DRAWDOWN,
            f"the drawdown is {drawdown:.4%} from the peak equity ({state.peak_equity:,.2f} -> "
            f"{equity:,.2f}), beyond the limit of {config.max_drawdown:.4%}; only orders that "
            "reduce a position pass",
        )
    return None


def check(
    request: OrderRequest,
    state: RiskState,
    config: RiskConfig,
    *,
    timeframe: Timeframe | str,
    calendar: Calendar | str,
) -> RiskDecision:
    """Decide whether ``request`` may be sent, given the account's ``state`` and limits.

    ``timeframe`` is the bar length the order was decided on (for ``stale_data``) and
    ``calendar`` the asset's calendar or its name (``24/7``, ``24/5``, ``XNYS``, ...). The checks
    and the worst-case rule are described in the module documentation; the first refusal is
    returned. Pure: the same inputs always give the same decision.

    Raises:
        ValueError: ``request`` is for another account than ``config``; an unknown timeframe or
            calendar name.
    """
    if request.account != config.account:
        raise ValueError(
            f"order {request.client_order_id} is for account {request.account!r} but the limits "
            f"are those of {config.account!r}; load the account's own limits"
        )
    tf = timeframe if type(timeframe) is Timeframe else Timeframe.parse(timeframe)
    cal = get_calendar(calendar) if isinstance(calendar, str) else calendar
    symbol, now = request.symbol, state.now

    if state.halted:
        why = f": {state.halt_reason}" if state.halt_reason else ""
        return RiskDecision.refuse(
            RiskCode.HALTED, f"trading is halted for account {config.account}{why}; `fks resume` lifts it"
        )
    price = state.prices.get(symbol)
    if price is None:
        return RiskDecision.refuse(RiskCode.STALE_DATA, f"{symbol}: no last price to value the order at")

    ref = reference_price(request, price)
    notional = request.quantity * ref
    if not _within(notional, config.max_order_notional):
        return RiskDecision.refuse(
            RiskCode.MAX_NOTIONAL,
            f"the order is worth {notional:,.2f} ({request.quantity:g} x {ref:g}), above the "
            f"limit of {config.max_order_notional:,.2f} per order",
        )

    now_ns = now.value  # the instants as integers (UTC ns): the same comparisons, cheaper
    window_ns = now_ns - _RATE_WINDOW_NS
    recent = sum(1 for t in state.recent_order_times if window_ns < t.value <= now_ns)
    if recent >= config.max_orders_per_minute:
        return RiskDecision.refuse(
            RiskCode.RATE_LIMIT,
            f"{recent} orders sent in the last 60 s; the limit is {config.max_orders_per_minute} a minute",
        )

    if config.trade_only_in_session and not always_open(cal):
        try:
            open_now = session_at(cal, now) is not None
            why = f"no {cal.name} session is open at {now:%Y-%m-%d %H:%M} UTC"
        except CalendarSpanError as exc:
            open_now, why = False, str(exc)
        if not open_now:
            return RiskDecision.refuse(RiskCode.MARKET_CLOSED, f"{symbol}: {why}")

    last_ts = state.last_bar_ts.get(symbol)
    if last_ts is None:
        return RiskDecision.refuse(RiskCode.STALE_DATA, f"{symbol}: no {tf.value} bar received yet")
    try:
        missing = _missing_bars(cal, tf, last_ts, now)
    except CalendarSpanError as exc:
        return RiskDecision.refuse(RiskCode.STALE_DATA, f"{symbol}: {exc}")
    if missing > config.max_missing_bars:
        return RiskDecision.refuse(
            RiskCode.STALE_DATA,
            f"{symbol}: the last {tf.value} bar opened at {last_ts:%Y-%m-%d %H:%M} UTC and {missing} "
            f"completed bars are missing since (at most {config.max_missing_bars} allowed)",
        )
    fx_closed = state.fx_closed_at.get(symbol)
    if fx_closed is not None and now - fx_closed > _days(config.max_fx_age_days):
        return RiskDecision.refuse(
            RiskCode.STALE_FX,
            f"{symbol}: its price converts into the account's currency at an FX bar that closed at "
            f"{fx_closed:%Y-%m-%d %H:%M} UTC, {(now - fx_closed) / pd.Timedelta(days=1):.1f} days ago "
            f"(at most {config.max_fx_age_days:g} allowed); ingest the currency pair's recent bars",
        )

    if request.model is not None:
        key = (request.model, request.model_version or "")
        registered = state.model_registered_at.get(key)
        if registered is None:
            return RiskDecision.refuse(
                RiskCode.STALE_MODEL,
                f"model {request.model} version {request.model_version}: registration time unknown",
            )
        age_ns = now_ns - utc(registered).value
        if age_ns > _days(config.max_model_age_days).value:
            return RiskDecision.refuse(
                RiskCode.STALE_MODEL,
                f"model {request.model} version {request.model_version} was registered "
                f"{age_ns / _DAY_NS:.1f} days ago; the limit is {config.max_model_age_days:g} days",
            )
        if config.min_confidence > 0 and (
            request.confidence is None or request.confidence < config.min_confidence
        ):
            return RiskDecision.refuse(
                RiskCode.LOW_CONFIDENCE,
                f"confidence {request.confidence} is below the minimum of {config.min_confidence:g}",
            )

    if not is_reducing(request, state):
        refusal = _loss_refusal(state, config)
        if refusal is not None:
            return refusal

    refusal = _exposure_refusal(
        symbol, request.side, request.quantity, state.positions, state.prices, state._box.copy(), config
    )
    return refusal or RiskDecision.accept()


def orders_over_limits(state: RiskState, config: RiskConfig) -> tuple[str, ...]:
    """The open orders that no longer fit the exposure limits at ``state``'s prices, to cancel.

    The open orders are checked again oldest first, as if each were sent now after the ones
    kept before it (``max_position``, ``max_gross``, ``max_net`` only); those that fail are
    returned. Once the flow cancels them, no fill at these prices can take an exposure above
    ``max(limit, its value before the fill)``.
    """
    kept: list[OpenOrder] = []
    cancel: list[str] = []
    for order in state.open_orders:
        refusal = _exposure_refusal(
            order.symbol, order.side, order.remaining, state.positions, state.prices,
            _Box.of(state.positions, kept), config,
        )  # fmt: skip
        if refusal is None:
            kept.append(order)
        else:
            cancel.append(order.order_id)
    return tuple(cancel)


def should_halt(state: RiskState, config: RiskConfig) -> RiskDecision | None:
    """A refusal (``daily_loss`` or ``drawdown``, with its reason) when the account's loss has
    crossed a limit, for the flow to halt the account and notify; None otherwise."""
    return _loss_refusal(state, config)
