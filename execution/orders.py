"""The order vocabulary every part of the paper desk shares: types, time in force, states, the
legal transitions between states, and the order and fill records.

The state machine (:data:`TRANSITIONS`)::

    NEW -> SUBMITTED -> ACCEPTED -> PARTIALLY_FILLED -> FILLED
      \\           \\          \\               \\
       REJECTED    REJECTED   CANCELLED        CANCELLED
                               EXPIRED          EXPIRED
                               FILLED

``FILLED``, ``REJECTED``, ``CANCELLED`` and ``EXPIRED`` are final. :func:`check_transition` raises
on anything else. A bracket is a parent entry order with two OCO children (take-profit limit and
stop-loss stop) that become active when the parent fills; when one child fills, the other is
cancelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd


class OrderType(StrEnum):
    """How an order's price works: at the market, a limit, a stop (a market order once the stop
    price trades), or a stop-limit (a limit order once the stop price trades)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    """How long an order lives: until cancelled, until the session's close, or fill what can be
    filled on the first bar it meets and cancel the rest."""

    GTC = "gtc"
    DAY = "day"
    IOC = "ioc"


class Side(StrEnum):
    """Buy or sell."""

    BUY = "buy"
    SELL = "sell"


class OrderStatus(StrEnum):
    """Where an order is in its life (see the module's state machine)."""

    NEW = "new"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL_STATES = frozenset(
    {OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
)
"""States an order never leaves."""

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
    OrderStatus.SUBMITTED: frozenset({OrderStatus.ACCEPTED, OrderStatus.REJECTED}),
    OrderStatus.ACCEPTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED}
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}
"""The legal moves: ``TRANSITIONS[a]`` holds every state an order in ``a`` may go to."""


class IllegalTransition(ValueError):
    """An order was asked to move to a state its current state does not lead to."""


def check_transition(order_id: str, current: OrderStatus, new: OrderStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (final state)"
        raise IllegalTransition(
            f"order {order_id}: {current.value} -> {new.value} is not a legal transition; allowed: {allowed}"
        )


@dataclass(frozen=True)
class OrderRequest:
    """What a strategy asks for. ``client_order_id`` is the idempotency key: submitting the same
    id twice never creates a second order.

    ``limit_price`` is required for limit and stop-limit orders, ``stop_price`` for stop and
    stop-limit orders; ``take_profit``/``stop_loss`` make a bracket (OCO children placed when
    this order fills). ``quantity`` is in units of the asset (> 0; the side gives the direction).

    Raises:
        ValueError: a missing or meaningless price, a non-positive or non-finite quantity.
    """

    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: float
    type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: float | None = None
    stop_price: float | None = None
    take_profit: float | None = None
    stop_loss: float | None = None
    model: str | None = None
    model_version: str | None = None
    confidence: float | None = None
    decided_at: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        if (  # a plain market order in one test (a desk makes one per decision): what the checks pass
            self.type is OrderType.MARKET
            and self.limit_price is None
            and self.stop_price is None
            and self.take_profit is None
            and self.stop_loss is None
            and type(self.quantity) is float
            and 0.0 < self.quantity < math.inf
            and type(self.client_order_id) is str
            and 0 < len(self.client_order_id) <= 64
        ):
            return
        if not self.client_order_id or len(self.client_order_id) > 64:
            raise ValueError("client_order_id must be 1-64 characters (it is the idempotency key)")
        if not (
            isinstance(self.quantity, int | float) and math.isfinite(self.quantity) and self.quantity > 0
        ):
            raise ValueError(f"quantity must be a positive number of units, got {self.quantity!r}")
        needs_limit = self.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = self.type in (OrderType.STOP, OrderType.STOP_LIMIT)
        for name, needed, value in (
            ("limit_price", needs_limit, self.limit_price),
            ("stop_price", needs_stop, self.stop_price),
        ):
            if needed and (value is None or not math.isfinite(value) or value <= 0):
                raise ValueError(f"a {self.type.value} order needs a positive {name}, got {value!r}")
            if not needed and value is not None:
                raise ValueError(f"a {self.type.value} order takes no {name}; use another order type")
        for name, value in (("take_profit", self.take_profit), ("stop_loss", self.stop_loss)):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive price, got {value!r}")

    @property
    def is_bracket(self) -> bool:
        """True when a take-profit or stop-loss rides on this order."""
        return self.take_profit is not None or self.stop_loss is not None


@dataclass(frozen=True)
class Fill:
    """One execution of (part of) an order: ``quantity`` units at ``price`` (positive; the
    order's side gives the direction) with ``fee``, both in the symbol's quote currency (the OMS
    books them in the account's at the FX rate of ``ts``), at bar ``ts``."""

    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    ts: pd.Timestamp

    @property
    def signed_quantity(self) -> float:
        """``+quantity`` for a buy, ``-quantity`` for a sell."""
        return self.quantity if self.side is Side.BUY else -self.quantity

    @property
    def cash_flow(self) -> float:
        """What the fill does to cash: ``-(signed quantity * price) - fee``."""
        return -self.signed_quantity * self.price - self.fee
