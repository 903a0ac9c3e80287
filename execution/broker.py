"""Brokers: the :class:`Broker` protocol every venue adapter implements, and :class:`PaperBroker`,
which fills orders against the bars that arrive after them.

The OMS talks to a broker only through :class:`Broker`: ``submit`` an
:class:`~execution.orders.OrderRequest` (its ``client_order_id`` is the idempotency key), ``cancel``
an order, list ``open_orders``, read ``fills`` (each with a ``broker_fill_id``, the key that keeps
a replayed fill from counting twice) and the ``account`` (cash and positions, for
reconciliation). A broker's order id is the request's ``client_order_id``.

Writing a live adapter
----------------------
A live adapter implements the same five methods over a venue's API; nothing else changes. Keys
come from :class:`config.settings.Settings` (``SecretStr``), never from code or logs. Rules:

* **Idempotency.** Send ``client_order_id`` with every order. On a timeout or a network error,
  never send again blindly: look the order up by its client id; send again only when the venue
  does not know it. Report every execution under the venue's own trade id as
  ``broker_fill_id``.
* **States.** Map the venue's order states to :class:`~execution.orders.OrderStatus`, and only
  report a move :func:`~execution.orders.check_transition` allows.

*Crypto exchanges with ccxt* (``exchange = ccxt.binance({...})``, ``enableRateLimit=True``):

* ``submit``: ``exchange.create_order(symbol, type, side, amount, price, params)`` with ``type``
  ``'market'``/``'limit'`` (stops per exchange, e.g. ``params={'stopPrice': ...}`` or
  ``'triggerPrice'``), ``params={'clientOrderId': request.client_order_id, 'timeInForce':
  'GTC' | 'IOC' | ...}``. Crypto has no sessions: map ``DAY`` to ``GTC`` plus a cancel at the
  UTC day's end, or refuse it. ``ccxt.InvalidOrder`` / ``ccxt.InsufficientFunds`` -> a
  ``REJECTED`` ack; ``ccxt.NetworkError`` / ``ccxt.RequestTimeout`` -> look it up
  (``fetch_open_orders`` / ``fetch_order`` and match ``clientOrderId``) before sending again.
* ``cancel``: ``exchange.cancel_order(id, symbol)``; ``ccxt.OrderNotFound`` -> False.
* ``open_orders``: ``exchange.fetch_open_orders(symbol)``.
* ``fills``: ``exchange.fetch_my_trades(symbol, since=ms)``; each trade's ``id`` is the
  ``broker_fill_id``, ``order`` the venue order (map it back by ``clientOrderId``), ``amount``,
  ``price``, ``fee['cost']`` (convert to the account currency), ``timestamp`` (ms).
* ``account``: ``exchange.fetch_balance()`` (spot: balances are the positions), or
  ``fetch_positions()`` for derivatives.
* States (ccxt's unified ``status``): ``open`` -> ``ACCEPTED`` (``PARTIALLY_FILLED`` when
  ``filled > 0``), ``closed`` -> ``FILLED``, ``canceled`` -> ``CANCELLED``, ``expired`` ->
  ``EXPIRED``, ``rejected`` -> ``REJECTED``.

*US equities with Alpaca* (REST, ``https://paper-api.alpaca.markets`` or the live host, headers
``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY``):

* ``submit``: ``POST /v2/orders`` with ``symbol, qty, side, type`` (``market``, ``limit``,
  ``stop``, ``stop_limit``), ``time_in_force`` (``day``, ``gtc``, ``ioc``), ``limit_price``,
  ``stop_price`` and ``client_order_id``; a bracket is ``order_class='bracket'`` with
  ``take_profit.limit_price`` and ``stop_loss.stop_price``. A 422 for a duplicate client id, a
  timeout or a 5xx -> ``GET /v2/orders:by_client_order_id?client_order_id=...`` first.
* ``cancel``: ``DELETE /v2/orders/{id}`` (404/422 -> False).
* ``open_orders``: ``GET /v2/orders?status=open``.
* ``fills``: ``GET /v2/account/activities/FILL?after=...`` (each activity's ``id`` is the
  ``broker_fill_id``, with ``order_id``, ``qty``, ``price``, ``transaction_time``), or the
  ``trade_updates`` stream's ``fill`` / ``partial_fill`` events.
* ``account``: ``GET /v2/account`` (``cash``, ``equity``) and ``GET /v2/positions``.
* States: ``new``, ``accepted``, ``pending_new`` -> ``ACCEPTED``; ``partially_filled`` ->
  ``PARTIALLY_FILLED``; ``filled`` -> ``FILLED``; ``canceled`` -> ``CANCELLED``; ``expired`` ->
  ``EXPIRED``; ``rejected`` -> ``REJECTED``; ``pending_cancel``, ``pending_replace``,
  ``done_for_day``, ``stopped``, ``calculated`` keep the last reported state until a final one.

Test an adapter the way the providers are tested: against a real HTTP server on loopback that
answers with the venue's documented payloads.

The paper broker
----------------
:class:`PaperBroker` keeps its own orders, fills, cash and positions in memory, deterministic (no
randomness, no clock). An order is decided on the bar whose ``ts`` (open time) is
``decided_at``; it never fills on that bar or an earlier one. Its first eligible bar is the
``latency_bars``-th bar of its symbol, among those given to :meth:`PaperBroker.on_bar` after it
was submitted, with ``ts > decided_at``; from there, on each bar:

* **market**: at the bar's open, moved against the trader by ``slippage_bps + spread_bps / 2``
  (a buy pays ``open * (1 + (slippage_bps + spread_bps / 2) / 1e4)``, a sell gets
  ``open * (1 - ...)``);
* **limit** buy: fills when ``low <= limit``, at ``min(open, limit)`` (a gap below the limit fills
  at the open); a sell when ``high >= limit``, at ``max(open, limit)``; no slippage;
* **stop** buy: triggers when ``high >= stop`` and fills at ``max(open, stop)`` moved like a
  market order (a gap through the stop fills at the open); a sell when ``low <= stop``, at
  ``min(open, stop)``;
* **stop-limit**: once triggered (as a stop) it is a limit order. On the trigger bar it fills at
  the trigger price ``max(open, stop)`` if that is within the limit; if the open gapped through
  the stop beyond the limit it fills at the limit when the bar comes back to it; else it rests as
  a limit from the next bar (the order of prices inside a bar is unknown, so nothing better is
  assumed);
* **volume**: all the orders of a symbol together fill at most ``volume_share * volume`` units of
  a bar (oldest order first); what is left waits for the next bar (``GTC`` and ``DAY``), is
  cancelled after the first eligible bar (``IOC``), or expires when a bar opens at or after the
  close of the session of the order's first eligible bar (``DAY``; the symbol's calendar), or by
  :meth:`PaperBroker.expire`;
* **fees**: ``max(min_fee, fee_bps / 1e4 * quantity * price)`` per fill, from cash.
* **currencies**: prices and fees are in the symbol's quote currency; cash is in the account's.
  Given ``fx`` (``fx(symbol, ts)`` -> account currency per unit of the symbol's quote currency at
  ``ts``; the desk passes :meth:`execution.oms.OrderManager.fx_rate`, the stored FX bars), a fill
  moves cash by ``cash_flow * fx(symbol, fill ts)`` and equity marks a position at
  ``last close * fx(symbol, last bar ts)``: the OMS's booking. Without it every symbol is in the
  account's currency.

Fills carry the bar's ``ts`` and the id ``f"{client_order_id}-{n}"`` (n = 1, 2, ...), so the same
bars always give the same fills with the same ids. Cash and positions are exactly the sum of the
fills; equity marks positions at each symbol's last close. The paper broker checks no risk (that
is :mod:`execution.risk`'s job before ``submit``): it lets cash go negative and positions go short.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import pandas as pd

from execution._utc import utc
from execution.orders import (
    FINAL_STATES,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    check_transition,
)
from execution.sessions import session_from
from market.bars import as_utc
from market.calendars import Calendar, get_calendar

_INF = math.inf

_QTY_TOL = 1e-12


@dataclass(frozen=True)
class OrderAck:
    """A broker's answer to ``submit``: the order's id at the broker (the ``client_order_id``
    for the paper broker) and ``ACCEPTED``, or ``REJECTED`` with the reason."""

    order_id: str
    client_order_id: str
    status: OrderStatus
    reason: str = ""

    @property
    def accepted(self) -> bool:
        """True unless the broker rejected the order."""
        return self.status is not OrderStatus.REJECTED


@dataclass(frozen=True)
class BrokerFill(Fill):
    """A :class:`~execution.orders.Fill` as a broker reports it, with ``broker_fill_id``, the
    broker's id of the execution: the idempotency key of fills."""

    broker_fill_id: str


@dataclass(frozen=True)
class BrokerOrder:
    """One order as the broker sees it: the request, its state, how much is filled and at what
    volume-weighted average price (None before the first fill), and why it was rejected,
    cancelled or expired."""

    order_id: str
    request: OrderRequest
    status: OrderStatus
    filled_quantity: float
    average_price: float | None
    reason: str = ""

    @property
    def remaining(self) -> float:
        """Units still to fill (0 once the order is final)."""
        return 0.0 if self.status in FINAL_STATES else self.request.quantity - self.filled_quantity


@dataclass(frozen=True)
class AccountSnapshot:
    """The broker's account: ``cash`` and ``equity`` (account currency), ``positions`` (units per
    symbol, negative when short, flat symbols left out) and the ``fees`` paid so far."""

    cash: float
    positions: Mapping[str, float]
    equity: float
    fees: float


@runtime_checkable
class Broker(Protocol):
    """What the OMS needs of a venue (see the module documentation, "Writing a live adapter")."""

    def submit(self, order: OrderRequest) -> OrderAck:
        """Send ``order``. Idempotent: the same ``client_order_id`` again returns the first ack."""
        ...

    def cancel(self, order_id: str) -> bool:
        """Cancel an open order; False when it is unknown or already final."""
        ...

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet final, oldest first."""
        ...

    def fills(self, since: pd.Timestamp | None = None) -> list[BrokerFill]:
        """Executions with ``ts >= since`` (all when None), in the order they happened."""
        ...

    def account(self) -> AccountSnapshot:
        """Cash, positions and equity, for reconciliation with the OMS's books."""
        ...


@dataclass(frozen=True)
class PaperCosts:
    """How the paper broker fills (see the module documentation).

    Attributes:
        slippage_bps: price impact of market and stop fills, basis points of the price.
        spread_bps: the full bid-ask spread in basis points; half is paid on each market or stop
            fill.
        fee_bps: commission in basis points of each fill's notional.
        min_fee: the least commission per fill, in the symbol's quote currency like the fee
            itself (the account's currency unless ``PaperBroker(fx=...)`` converts the symbol).
        volume_share: the share of a bar's volume (in (0, 1]) the account's orders of a symbol
            may take together; None for no cap. A bar with no volume then fills nothing.
        latency_bars: the first eligible bar is the ``latency_bars``-th bar after the decision
            bar (>= 1).

    Raises:
        ValueError: a negative, non-finite or out-of-range field.
    """

    slippage_bps: float = 1.0
    spread_bps: float = 2.0
    fee_bps: float = 1.0
    min_fee: float = 0.0
    volume_share: float | None = 0.1
    latency_bars: int = 1

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "spread_bps", "fee_bps", "min_fee"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"PaperCosts.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"PaperCosts.{name} must be >= 0, got {value!r}")
        if self.market_impact >= 1:
            raise ValueError("PaperCosts: slippage_bps + spread_bps / 2 must stay below 10000 (100%)")
        if self.volume_share is not None and not 0 < self.volume_share <= 1:
            raise ValueError(f"PaperCosts.volume_share must be in (0, 1] or None, got {self.volume_share!r}")
        latency = self.latency_bars
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 1:
            raise ValueError(f"PaperCosts.latency_bars must be an integer >= 1, got {self.latency_bars!r}")

    @property
    def market_impact(self) -> float:
        """What a market or stop fill pays over the open, as a fraction: ``(slippage + spread / 2) / 1e4``."""
        return (self.slippage_bps + self.spread_bps / 2) / 1e4

    def fee(self, notional: float) -> float:
        """The commission of a fill of ``notional`` (in the notional's currency)."""
        return max(self.min_fee, self.fee_bps / 1e4 * notional)


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar: ``ts`` its open time (UTC), prices > 0, ``volume`` >= 0 (units).

    Raises:
        ValueError: a price that is not positive and finite, a negative or non-finite volume, a
            high below a low.
    """

    ts: pd.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float

    def __post_init__(self) -> None:
        ts = self.ts
        if type(ts) is not pd.Timestamp or ts.tzinfo is not dt.UTC:
            object.__setattr__(self, "ts", utc(ts, "Bar.ts"))
        # one chained test for the valid bar (a NaN or an infinity fails ``0 < x < inf``); the
        # checks one by one only to say what is wrong (a bar is made per symbol and bar)
        o, h, lo, c, v = self.open, self.high, self.low, self.close, self.volume
        if not (
            0 < o < _INF and 0 < h < _INF and 0 < lo < _INF and 0 < c < _INF and 0 <= v < _INF and h >= lo
        ):
            self._refuse()

    def _refuse(self) -> None:
        for name in ("open", "high", "low", "close"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"bar at {self.ts}: {name} must be a positive price, got {value!r}")
        if not (math.isfinite(self.volume) and self.volume >= 0):
            raise ValueError(f"bar at {self.ts}: volume must be >= 0, got {self.volume!r}")
        raise ValueError(f"bar at {self.ts}: high {self.high} is below low {self.low}")


@dataclass
class _Order:
    request: OrderRequest
    decided_at: pd.Timestamp
    seq: int
    status: OrderStatus = OrderStatus.ACCEPTED
    filled: float = 0.0
    value: float = 0.0
    reason: str = ""
    bars_after: int = 0
    triggered: bool = False
    session_close: pd.Timestamp | None = None
    fills: int = 0

    @property
    def remaining(self) -> float:
        return self.request.quantity - self.filled

    def move(self, status: OrderStatus, reason: str = "") -> None:
        check_transition(self.request.client_order_id, self.status, status)
        self.status = status
        if reason:
            self.reason = reason

    def snapshot(self) -> BrokerOrder:
        avg = self.value / self.filled if self.filled > 0 else None
        rid = self.request.client_order_id
        return BrokerOrder(rid, self.request, self.status, self.filled, avg, self.reason)


@dataclass
class _Book:
    cash: float
    fees: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)
    last_close: dict[str, float] = field(default_factory=dict)
    last_ts: dict[str, pd.Timestamp] = field(default_factory=dict)


class PaperBroker:
    """A simulated venue for one account that fills orders against later bars (see the module
    documentation for the fill rules).

    Args:
        costs: slippage, spread, fees, the volume cap and the latency.
        account: the account it trades for; orders for another account are rejected.
        cash: the starting cash, account currency.
        calendars: per symbol, its calendar or calendar name (for ``DAY`` orders); others use
            ``default_calendar``.
        default_calendar: ``24/7`` unless given.
        fx: ``fx(symbol, ts)``, the account currency per unit of ``symbol``'s quote currency at
            ``ts`` (see the module documentation); None: every symbol in the account's currency.

    Feed it bars with :meth:`on_bar` (or a canonical frame with :meth:`on_bars`), each symbol's
    bars in time order; a bar at or before the symbol's last one is ignored, so replaying bars
    never fills twice.
    """

    def __init__(
        self,
        costs: PaperCosts | None = None,
        *,
        account: str = "default",
        cash: float = 100_000.0,
        calendars: Mapping[str, Calendar | str] | None = None,
        default_calendar: Calendar | str = "24/7",
        fx: Callable[[str, pd.Timestamp], float] | None = None,
    ) -> None:
        if not math.isfinite(cash):
            raise ValueError(f"cash must be finite, got {cash!r}")
        self.costs = costs if costs is not None else PaperCosts()
        self.account_name = account
        self._calendars = dict(calendars or {})
        self._default_calendar = default_calendar
        self._fx = fx
        self._orders: dict[str, _Order] = {}
        # Per symbol, its orders that may still be open, by seq (final ones are dropped lazily,
        # on the symbol's next bar): on_bar scans these instead of every order ever held.
        self._by_symbol: dict[str, list[_Order]] = {}
        self._acks: dict[str, OrderAck] = {}
        self._fills: list[BrokerFill] = []
        self._book = _Book(cash=float(cash))
        self._next_seq = 0

    # -- the Broker protocol ------------------------------------------------------------------
    def submit(self, order: OrderRequest, decided_at: pd.Timestamp | str | None = None) -> OrderAck:
        """Queue ``order``, decided on the bar that opened at ``decided_at`` (default: the
        request's ``decided_at``). Idempotent on ``client_order_id``.

        Rejected (with the reason on the ack): another account's order, a bracket (the OMS
        places its children as orders of their own), no decision time.
        """
        cid = order.client_order_id
        if cid in self._acks:
            return self._acks[cid]
        when = decided_at if decided_at is not None else order.decided_at
        reason = ""
        if order.account != self.account_name:
            reason = f"this paper broker trades for account {self.account_name!r}, not {order.account!r}"
        elif order.is_bracket:
            reason = "brackets are not handled by the broker: send the children as orders of their own"
        elif when is None:
            reason = "no decision time: pass decided_at (the ts of the bar the decision saw)"
        if reason or when is None:
            ack = OrderAck(cid, cid, OrderStatus.REJECTED, reason)
        else:
            queued = _Order(order, as_utc(when, "decided_at"), seq=self._next_seq)
            self._orders[cid] = queued
            self._index(queued)
            self._next_seq += 1
            ack = OrderAck(cid, cid, OrderStatus.ACCEPTED)
        self._acks[cid] = ack
        return ack

    def cancel(self, order_id: str) -> bool:
        """Cancel an open order; False when it is unknown or already final."""
        order = self._orders.get(order_id)
        if order is None or order.status in FINAL_STATES:
            return False
        order.move(OrderStatus.CANCELLED, "cancelled on request")
        return True

    def open_orders(self) -> list[BrokerOrder]:
        """Orders not yet final, oldest first."""
        return [o.snapshot() for o in self._orders.values() if o.status not in FINAL_STATES]

    def fills(self, since: pd.Timestamp | str | None = None) -> list[BrokerFill]:
        """Fills with ``ts >= since`` (all when None), in the order they happened."""
        if since is None:
            return list(self._fills)
        lo = as_utc(since, "since")
        return [f for f in self._fills if f.ts >= lo]

    def account(self) -> AccountSnapshot:
        """Cash, positions (flat symbols left out), equity at the last closes, fees paid."""
        book = self._book
        positions = {s: q for s, q in book.positions.items() if q != 0}
        fx = self._fx
        equity = book.cash + sum(
            q * book.last_close[s] * (1.0 if fx is None else fx(s, book.last_ts[s]))
            for s, q in positions.items()
        )
        return AccountSnapshot(book.cash, MappingProxyType(positions), equity, book.fees)

    # -- more than the protocol ---------------------------------------------------------------
    def order(self, order_id: str) -> BrokerOrder:
        """One order, final or not.

        Raises:
            KeyError: no accepted order has this id.
        """
        try:
            return self._orders[order_id].snapshot()
        except KeyError:
            raise KeyError(f"no order {order_id!r} at this paper broker") from None

    def orders(self) -> list[BrokerOrder]:
        """Every accepted order, oldest first."""
        return [o.snapshot() for o in self._orders.values()]

    def last_bar_ts(self, symbol: str) -> pd.Timestamp | None:
        """The open time of the last bar of ``symbol`` given to :meth:`on_bar`, or None."""
        return self._book.last_ts.get(symbol)

    def state(self) -> str:
        """The broker's state as JSON, to save and :meth:`restore` after a restart: its open
        orders (with their progress), cash, fees, positions and each symbol's last bar. Final
        orders and past fills are left out: the OMS has them."""
        book = self._book
        orders = [
            {
                "request": _request_json(o.request),
                "decided_at": o.decided_at.isoformat(),
                "seq": o.seq,
                "status": o.status.value,
                "filled": o.filled,
                "value": o.value,
                "reason": o.reason,
                "bars_after": o.bars_after,
                "triggered": o.triggered,
                "session_close": None if o.session_close is None else o.session_close.isoformat(),
                "fills": o.fills,
            }
            for o in self._orders.values()
            if o.status not in FINAL_STATES
        ]
        return json.dumps(
            {
                "account": self.account_name,
                "cash": book.cash,
                "fees": book.fees,
                "positions": book.positions,
                "last_close": book.last_close,
                "last_ts": {s: t.isoformat() for s, t in book.last_ts.items()},
                "next_seq": self._next_seq,
                "orders": orders,
            },
            sort_keys=True,
        )

    def restore(self, state: str) -> None:
        """Replace this broker's books by a :meth:`state` saved earlier (its costs and calendars
        stay those it was built with).

        Raises:
            ValueError: the state is not JSON of this kind, or belongs to another account.
        """
        try:
            data = json.loads(state)
            if data["account"] != self.account_name:
                raise ValueError(
                    f"the saved paper broker state is account {data['account']!r}'s, "
                    f"not {self.account_name!r}"
                )
            book = _Book(
                cash=float(data["cash"]),
                fees=float(data["fees"]),
                positions={s: float(q) for s, q in data["positions"].items()},
                last_close={s: float(p) for s, p in data["last_close"].items()},
                last_ts={s: pd.Timestamp(t) for s, t in data["last_ts"].items()},
            )
            orders = {}
            for item in data["orders"]:
                request = _request_from_json(item["request"])
                close = item["session_close"]
                orders[request.client_order_id] = _Order(
                    request,
                    pd.Timestamp(item["decided_at"]),
                    seq=int(item["seq"]),
                    status=OrderStatus(item["status"]),
                    filled=float(item["filled"]),
                    value=float(item["value"]),
                    reason=str(item["reason"]),
                    bars_after=int(item["bars_after"]),
                    triggered=bool(item["triggered"]),
                    session_close=None if close is None else pd.Timestamp(close),
                    fills=int(item["fills"]),
                )
            next_seq = int(data["next_seq"])
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a saved paper broker state: {exc}") from exc
        self._book = book
        self._orders = orders
        self._by_symbol = {}
        for item_order in sorted(orders.values(), key=lambda o: o.seq):
            self._by_symbol.setdefault(item_order.request.symbol, []).append(item_order)
        self._acks = {cid: OrderAck(cid, cid, OrderStatus.ACCEPTED) for cid in orders}
        self._fills = []
        self._next_seq = next_seq

    def expire(self, now: pd.Timestamp | str) -> list[str]:
        """Expire the ``DAY`` orders whose session closed at or before ``now`` (for when no bar
        comes after the close, e.g. before a weekend); returns their ids."""
        when = as_utc(now, "now")
        gone = []
        for cid, order in self._orders.items():
            if (
                order.status not in FINAL_STATES
                and order.session_close is not None
                and when >= order.session_close
            ):
                order.move(OrderStatus.EXPIRED, f"DAY order: the session closed at {order.session_close}")
                gone.append(cid)
        return gone

    def on_bars(self, symbol: str, bars: pd.DataFrame) -> list[BrokerFill]:
        """Feed a canonical bar frame (index ``ts``, columns open, high, low, close, volume) bar
        by bar; returns the fills."""
        out: list[BrokerFill] = []
        for bar in _rows(bars):
            out += self.on_bar(symbol, bar)
        return out

    def on_bar(self, symbol: str, bar: Bar) -> list[BrokerFill]:
        """Process one new bar of ``symbol``: expire, trigger and fill the symbol's open orders
        whose eligible bar has come (oldest first). Returns the fills it made.

        A bar at or before the symbol's last bar is ignored (returns no fill).
        """
        book = self._book
        last = book.last_ts.get(symbol)
        if last is not None and bar.ts <= last:
            return []
        book.last_ts[symbol] = bar.ts
        book.last_close[symbol] = bar.close
        available = math.inf if self.costs.volume_share is None else self.costs.volume_share * bar.volume
        made: list[BrokerFill] = []
        queue = self._by_symbol.get(symbol)
        if not queue:
            return made
        for order in queue:
            request = order.request
            if order.status in FINAL_STATES or bar.ts <= order.decided_at:
                continue
            order.bars_after += 1
            if order.bars_after < self.costs.latency_bars:
                continue
            tif = request.time_in_force
            if tif is TimeInForce.DAY:
                if order.session_close is None:
                    order.session_close = session_from(self._calendar(symbol), bar.ts).close
                if bar.ts >= order.session_close:
                    order.move(OrderStatus.EXPIRED, f"DAY order: the session closed at {order.session_close}")
                    continue
            price = self._match(order, bar)
            if price is not None and available > 0:
                quantity = min(order.remaining, available)
                available -= quantity
                made.append(self._fill(order, quantity, price, bar.ts))
            if tif is TimeInForce.IOC and order.status not in FINAL_STATES:
                order.move(OrderStatus.CANCELLED, "IOC: the rest was cancelled after its first eligible bar")
        queue[:] = [o for o in queue if o.status not in FINAL_STATES]
        return made

    # -- internals ----------------------------------------------------------------------------
    def _index(self, order: _Order) -> None:
        """Add ``order`` to its symbol's queue, kept in ``seq`` order (ties: arrival order)."""
        queue = self._by_symbol.setdefault(order.request.symbol, [])
        if not queue or queue[-1].seq <= order.seq:
            queue.append(order)
        else:
            bisect.insort_right(queue, order, key=lambda o: o.seq)

    def _calendar(self, symbol: str) -> Calendar:
        cal = self._calendars.get(symbol, self._default_calendar)
        return get_calendar(cal) if isinstance(cal, str) else cal

    def _match(self, order: _Order, bar: Bar) -> float | None:
        """The fill price of ``order`` on ``bar``, or None when it does not fill there."""
        request = order.request
        buy = request.side is Side.BUY
        impact = self.costs.market_impact
        worse = 1 + impact if buy else 1 - impact
        kind = request.type
        if kind is OrderType.MARKET:
            return bar.open * worse
        if kind is OrderType.LIMIT or (kind is OrderType.STOP_LIMIT and order.triggered):
            assert request.limit_price is not None
            return _limit_price(buy, request.limit_price, bar)
        assert request.stop_price is not None
        stop = request.stop_price
        hit = bar.high >= stop if buy else bar.low <= stop
        if not hit:
            return None
        trigger = max(bar.open, stop) if buy else min(bar.open, stop)
        if kind is OrderType.STOP:
            return trigger * worse
        order.triggered = True
        assert request.limit_price is not None
        limit = request.limit_price
        if (trigger <= limit) if buy else (trigger >= limit):
            return trigger
        gapped = bar.open >= stop if buy else bar.open <= stop
        if gapped and ((bar.low <= limit) if buy else (bar.high >= limit)):
            return limit
        return None

    def _fill(self, order: _Order, quantity: float, price: float, ts: pd.Timestamp) -> BrokerFill:
        request = order.request
        complete = order.remaining - quantity <= _QTY_TOL * request.quantity
        if complete:
            quantity = order.remaining
        fee = self.costs.fee(quantity * price)
        order.fills += 1
        cid, symbol, side = request.client_order_id, request.symbol, request.side
        fill = object.__new__(BrokerFill)  # the fields set at once (a frozen dataclass sets them one by one)
        fill.__dict__.update(
            order_id=cid, symbol=symbol, side=side, quantity=quantity, price=price, fee=fee, ts=ts,
            broker_fill_id=f"{cid}-{order.fills}",
        )  # fmt: skip
        order.filled = request.quantity if complete else order.filled + quantity
        order.value += quantity * price
        order.move(OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED)
        book = self._book
        rate = 1.0 if self._fx is None else self._fx(symbol, ts)
        signed = quantity if side is Side.BUY else -quantity  # fill.signed_quantity, fill.cash_flow
        book.cash += (-signed * price - fee) * rate
        book.fees += fee * rate
        book.positions[symbol] = book.positions.get(symbol, 0.0) + signed
        self._fills.append(fill)
        return fill


def _limit_price(buy: bool, limit: float, bar: Bar) -> float | None:
    if buy:
        return min(bar.open, limit) if bar.low <= limit else None
    return max(bar.open, limit) if bar.high >= limit else None


def _rows(bars: pd.DataFrame) -> Iterator[Bar]:
    for ts, o, h, lo, c, v in zip(
        bars.index, bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], strict=True
    ):
        yield Bar(pd.Timestamp(ts), float(o), float(h), float(lo), float(c), float(v))


_REQUEST_FLOATS = ("quantity", "limit_price", "stop_price", "take_profit", "stop_loss", "confidence")


def _request_json(request: OrderRequest) -> dict[str, object]:
    return {
        "client_order_id": request.client_order_id,
        "account": request.account,
        "symbol": request.symbol,
        "side": request.side.value,
        "type": request.type.value,
        "time_in_force": request.time_in_force.value,
        "model": request.model,
        "model_version": request.model_version,
        "decided_at": None if request.decided_at is None else request.decided_at.isoformat(),
        **{name: getattr(request, name) for name in _REQUEST_FLOATS},
    }


def _request_from_json(data: Mapping[str, object]) -> OrderRequest:
    decided = data["decided_at"]
    return OrderRequest(
        client_order_id=str(data["client_order_id"]),
        account=str(data["account"]),
        symbol=str(data["symbol"]),
        side=Side(str(data["side"])),
        type=OrderType(str(data["type"])),
        time_in_force=TimeInForce(str(data["time_in_force"])),
        model=None if data["model"] is None else str(data["model"]),
        model_version=None if data["model_version"] is None else str(data["model_version"]),
        decided_at=None if decided is None else pd.Timestamp(str(decided)),
        **{name: (None if data[name] is None else float(data[name])) for name in _REQUEST_FLOATS},  # type: ignore[arg-type]
    )
