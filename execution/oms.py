"""The order management system: every order of one account, its life through the state machine of
:mod:`execution.orders`, its fills, and the positions and cash they make, kept in the database.

::

    oms = OrderManager(engine, "paper", initial_cash=100_000.0)   # opens or reopens the account
    order = oms.submit(OrderRequest("sig-2024-01-02-SPY", "paper", "SPY", Side.BUY, 10,
                                    take_profit=110.0, stop_loss=95.0))      # SUBMITTED
    broker.submit(order.broker_request)       # keyed by client_order_id; the bracket stays here
    oms.accept(order.id)                                                      # the broker took it
    outcome = oms.apply_fill(Fill(order.id, "SPY", Side.BUY, 10, 100.0, 0.5, ts), "brk-1")
    outcome.created                   # the bracket's take-profit and stop-loss, to send to the broker

Guarantees:

- **One state machine.** Every status change goes through :func:`execution.orders.check_transition`
  on the order as this manager last wrote it (its open orders and the current batch's writes are
  kept in memory: no read) or, for an order it does not hold, as read and locked inside the
  transaction that writes the change. The write is a compare-and-set on the row's status and
  filled quantity: a row moved by someone else meanwhile (another process) matches nothing, and
  the change then reads the locked row and decides anew; a write from a stale read outside the
  manager raises :class:`storage.execution.StaleOrder`, nothing written. Positions are written
  the same way (compare-and-set on the values the manager knows, else read and recomputed).
- **One transaction per change.** The order, its fill, the position, the account's cash, bracket
  children or cancelled OCO siblings and the ``audit_log`` rows are committed together or not at
  all; the in-memory view is updated only after the commit. :meth:`OrderManager.batch` makes
  several changes one transaction (each still writes its rows and audit rows, but the account's
  cash, which the batch writes once before it commits; all or nothing).
- **Idempotent.** ``client_order_id`` is the idempotency key of orders: submitting it again
  returns the stored order and creates nothing (another request under the same key raises
  :class:`OrderConflict`). ``broker_fill_id`` is the key of fills: a replayed fill is reported as
  a duplicate and counted once.
- **No fill lost.** A fill that reaches an order already cancelled or expired here (the cancel
  and the fill crossed at the venue) is booked all the same; the order keeps its final state.
- **Recovery.** A new manager on the same database (:meth:`OrderManager.recover`, called by the
  constructor) rebuilds the open orders, positions and cash from it; nothing is sent again: the
  caller re-sends only what it chooses, keyed by ``client_order_id``, which the broker dedups.

Brackets: an order with ``take_profit`` and/or ``stop_loss`` places its children when it is done
with a filled quantity (``FILLED``; or ``CANCELLED``/``EXPIRED`` after partial fills): a
take-profit LIMIT and a stop-loss STOP on the opposite side, for the filled quantity, GTC, in one
OCO group, submitted in the same transaction. When one child fills completely its sibling is
cancelled (if the sibling is not yet accepted, it is cancelled as soon as it is). A parent
cancelled before any fill places no children.

Currencies: cash, the equity marks and the ``*_base`` figures of positions are in the account's
``base_currency``. A symbol that ``currencies`` quotes in another currency (e.g. ``{"SAP":
"EUR"}`` in a USD account) is booked at the rate of each fill's time: the close of the last FX
bar (``EURUSD``, else ``1 / USDEUR``) *completed* at or before the fill's ``ts``
(:func:`execution.fx.fx_rate`, no look-ahead), read in the fill's transaction and stored on the
fill (``fills.fx_rate``). Cash moves by ``(-signed quantity * price - fee) * rate`` (the fee is
charged in the quote currency, like the price); the position keeps its average cost and realised
P&L both in the quote currency and in base (each fill at its own rate, so the realised P&L in base
includes the FX move). :meth:`OrderManager.submit` refuses an order of such a symbol with
:class:`execution.fx.MissingFxRate` (which names the pair to ingest) before anything is stored
when no FX bar has completed by the order's decision time (else now): its fills could not be booked.

Halting (``trading_state``): while the account is halted :meth:`OrderManager.submit` refuses new
orders with :class:`TradingHalted`; fills, cancels and bracket exits still go through.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from execution.fx import MissingFxRate, Quote, _currency, _fx_quote
from execution.orders import (
    FINAL_STATES,
    TRANSITIONS,
    Fill,
    IllegalTransition,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    check_transition,
)
from market.bars import as_utc
from storage.audit import write_audit_rows
from storage.execution import (
    LATE_FILL_STATUSES,
    AuditRows,
    BookedFill,
    ClaimedFill,
    EquityPoint,
    FillResult,
    OrderRecord,
    Position,
    StaleOrder,
    TradingState,
    claim_fill,
    fill_completes,
    find_order,
    get_account,
    get_order,
    get_trading_state,
    insert_order,
    insert_order_if_absent,
    insert_orders_if_absent,
    list_orders,
    list_positions,
    open_account,
    record_equity,
    record_fill,
    record_fills,
    replayed_fill,
    set_cash,
    set_trading_state,
    stamp_now,
    transition_order,
    transition_orders,
)

OPEN_STATES = frozenset(OrderStatus) - FINAL_STATES
"""States of an order that may still change."""

_FILLABLE = frozenset(
    s.value for s, moves in TRANSITIONS.items() if {OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED} <= moves
)
"""The states from which a fill's move (to ``filled`` or ``partially_filled``) is legal by the state
machine (:data:`execution.orders.TRANSITIONS`): the orders :meth:`OrderManager.apply_fills` books
in a group without checking each move again."""

_T = TypeVar("_T")
_I = TypeVar("_I")
_G = TypeVar("_G")
_R = TypeVar("_R")


class OrderConflict(ValueError):
    """A ``client_order_id`` already names another order request in this account: the key must
    be unique per intent. Use a new id for a new order."""


class TradingHalted(RuntimeError):
    """The account is halted (``fks halt``): no new order is taken until ``fks resume``."""


class UnknownOrder(LookupError):
    """No order of this account has that id."""


@dataclass(frozen=True)
class Order:
    """One order as the OMS knows it: the request's fields, where it is in its life, what has
    been filled (``filled_quantity`` units at the volume-weighted ``avg_fill_price``), why it
    was refused (``reject_code``, ``reject_reason``), and its bracket links (``parent_id``,
    ``oco_group``). Times are UTC timestamps."""

    id: str
    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: float
    type: OrderType
    time_in_force: TimeInForce
    status: OrderStatus
    filled_quantity: float
    avg_fill_price: float | None
    limit_price: float | None
    stop_price: float | None
    take_profit: float | None
    stop_loss: float | None
    parent_id: str | None
    oco_group: str | None
    reject_code: str | None
    reject_reason: str | None
    model: str | None
    model_version: str | None
    confidence: float | None
    decided_at: pd.Timestamp | None
    created_at: pd.Timestamp
    updated_at: pd.Timestamp

    @property
    def remaining(self) -> float:
        """Units still to fill."""
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def is_open(self) -> bool:
        """True until the order reaches a final state."""
        return self.status not in FINAL_STATES

    @property
    def broker_request(self) -> OrderRequest:
        """What to send to a broker for this order: its request without the bracket (the OMS
        places the take-profit and stop-loss as orders of their own when this one is done)."""
        return self._request(bracket=False)

    @property
    def request(self) -> OrderRequest:
        """The request this order carries out (its idempotency key included)."""
        return self._request(bracket=True)

    def _request(self, *, bracket: bool) -> OrderRequest:
        # the order's fields passed OrderRequest's checks when it was submitted (or are a stored
        # row's, under the same constraints): set at once, not checked again for every send
        request = object.__new__(OrderRequest)
        request.__dict__.update(
            client_order_id=self.client_order_id,
            account=self.account,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            type=self.type,
            time_in_force=self.time_in_force,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            take_profit=self.take_profit if bracket else None,
            stop_loss=self.stop_loss if bracket else None,
            model=self.model,
            model_version=self.model_version,
            confidence=self.confidence,
            decided_at=self.decided_at,
        )
        return request


@dataclass(frozen=True)
class FillOutcome:
    """What :meth:`OrderManager.apply_fill` did: the order after the fill, the fill's row id,
    whether it was a replay (``duplicate``: nothing changed), the position and cash after it,
    the bracket children it placed (``created``, to send to the broker), the OCO siblings it
    cancelled (``cancelled``, to cancel at the broker), and whether it was a ``late`` fill (of an
    order already cancelled or expired here: the cancel and the fill crossed at the venue)."""

    order: Order
    fill_id: int
    duplicate: bool
    position: Position
    cash: float
    created: tuple[Order, ...] = ()
    cancelled: tuple[Order, ...] = ()
    late: bool = False


_ENUM_FIELDS: tuple[tuple[str, type], ...] = (
    ("side", Side), ("type", OrderType), ("time_in_force", TimeInForce), ("status", OrderStatus),
)  # fmt: skip
_ENUMS: dict[tuple[str, ...], dict[str, Enum]] = {
    tuple(m.value for m in members): dict(zip((name for name, _ in _ENUM_FIELDS), members, strict=True))
    for members in itertools.product(Side, OrderType, TimeInForce, OrderStatus)
}
"""``(side, type, time_in_force, status)`` as stored -> the four as members, by field name."""


def _order(record: OrderRecord) -> Order:
    """``record`` as the OMS's :class:`Order`: the same fields, the enums' values as members.
    Built as a copy of the record's fields (a frozen dataclass's ``__init__`` sets them one by
    one; this runs for every order a change touches)."""
    order = object.__new__(Order)
    fields = order.__dict__
    fields.update(vars(record))
    members = _ENUMS.get((record.side, record.type, record.time_in_force, record.status))
    if members is None:  # an unknown value raises
        members = {name: kind(fields[name]) for name, kind in _ENUM_FIELDS}
    fields.update(members)
    return order


_SEQUENCE = itertools.count()


def new_order_id(created_at: pd.Timestamp) -> str:
    """A new order id (32 hex digits, like a uuid's): the millisecond of ``created_at``, this
    process's order sequence number and 48 random bits. Orders are listed by ``(created_at,
    id)``; with the sequence after the time, the orders one process creates in the same
    millisecond keep their order (a random id sorted them by chance), and the random part keeps
    ids of different processes apart."""
    ms = created_at.value // 1_000_000
    return f"{ms & 0xFFFFFFFFFFFF:012x}{next(_SEQUENCE) & 0xFFFFFFFF:08x}{secrets.token_hex(6)}"


def _ms_floor(value: pd.Timestamp | None) -> pd.Timestamp | None:
    return None if value is None else as_utc(value, "decided_at").floor("ms")


_COMPARED = (
    "symbol", "side", "quantity", "type", "time_in_force", "limit_price", "stop_price", "take_profit",
    "stop_loss", "model", "model_version", "confidence",
)  # fmt: skip


def _differences(stored: Order, request: OrderRequest) -> list[str]:
    """The request fields in which ``request`` differs from the order stored under its key."""
    found = [
        f"{name}: stored {getattr(stored, name)!r}, asked {getattr(request, name)!r}"
        for name in _COMPARED
        if getattr(stored, name) != getattr(request, name)
    ]
    if _ms_floor(stored.decided_at) != _ms_floor(request.decided_at):
        found.append(f"decided_at: stored {stored.decided_at}, asked {request.decided_at}")
    return found


def _check_bracket(request: OrderRequest) -> None:
    tp, sl = request.take_profit, request.stop_loss
    buy = request.side is Side.BUY
    if tp is not None and sl is not None and (sl >= tp if buy else sl <= tp):
        raise ValueError(
            f"a {request.side.value} bracket needs stop_loss {'below' if buy else 'above'} take_profit; "
            f"got stop_loss={sl:g}, take_profit={tp:g}"
        )
    entry = request.limit_price
    if entry is None:
        return
    for name, price, below in (("take_profit", tp, not buy), ("stop_loss", sl, buy)):
        if price is not None and (price >= entry if below else price <= entry):
            side = "below" if below else "above"
            raise ValueError(
                f"a {request.side.value} bracket's {name} must be {side} its limit price {entry:g}, "
                f"got {price:g}"
            )


class _Change:
    """What one transaction of the manager changed (see :meth:`OrderManager._change`): the
    orders it wrote (``orders``), the positions and cash it left, and its ``audit_log`` rows
    (``audit``, written together just before it commits). A plain class with slots: one is made
    for every change."""

    __slots__ = ("_views", "audit", "cash", "conn", "orders", "positions")

    def __init__(self, conn: Connection, audit: AuditRows | None = None) -> None:
        self.conn = conn
        self.orders: list[OrderRecord] = []
        self.positions: list[Position] = []
        self.cash: float | None = None
        self.audit: AuditRows = [] if audit is None else audit
        self._views: dict[int, Order] = {}

    def touch(self, record: OrderRecord) -> OrderRecord:
        """Note ``record`` (an order as written) for the view; returns it."""
        self.orders.append(record)
        return record

    def view(self, record: OrderRecord) -> Order:
        """``record`` as an :class:`Order`, made once per record (the view and the caller share it)."""
        key = id(record)  # the record is kept alive by ``orders`` or the caller
        order = self._views.get(key)
        if order is None:
            order = self._views[key] = _order(record)
        return order


@dataclass
class _Batch:
    """The transaction of :meth:`OrderManager.batch`: its changes (for the view, after the
    commit), their audit rows (written together before it) and the first exception raised."""

    conn: Connection
    changes: list[_Change] = field(default_factory=list)
    audit: AuditRows = field(default_factory=list)
    failed: BaseException | None = None
    trading: TradingState | None = None
    """The kill switch as read by the batch's first submit (the batch is one point in time)."""
    records: dict[str, OrderRecord] = field(default_factory=dict)
    """The orders written by the batch's changes so far, as written (by id)."""
    client_ids: dict[str, str] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    """The positions written by the batch's changes so far (by symbol)."""
    cash: float | None = None
    """The account's cash as the batch's last change to it left it."""
    cash_was: float | None = None
    """The account's cash as stored before the batch's fills that have not written it yet (their
    flows are in :attr:`cash`); None when there are none (see :meth:`OrderManager._store_cash`)."""

    def note(self, change: _Change) -> None:
        """Add a change done in the batch to what its later changes know."""
        for record in change.orders:
            self.records[record.id] = record
            self.client_ids[record.client_order_id] = record.id
        for position in change.positions:
            self.positions[position.symbol] = position
        if change.cash is not None:
            self.cash = change.cash


WAL_AUTOCHECKPOINT = 10_000
"""Pages of SQLite's write-ahead log after which a commit of the manager checkpoints it (SQLite's
default is 1,000, about 4 MB): set on each connection the manager writes on. The desk commits
twice a bar (and once more to finish the cycle); each checkpoint syncs the log and the database
file to disk, so fewer, larger ones cost less wall time for the same work (the log is
checkpointed all the same, and when the last connection closes)."""

_TUNED = "fks_oms_tuned"


def _tune(conn: Connection) -> None:
    """The manager's settings on ``conn``'s database connection, once per connection (SQLite:
    :data:`WAL_AUTOCHECKPOINT`; nothing on another database)."""
    if conn.dialect.name != "sqlite":
        return
    info = conn.connection.info
    if not info.get(_TUNED):
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        info[_TUNED] = True


class _ChangeScope:
    """The context manager of :meth:`OrderManager._change` (a class, not a generator: it is
    entered for every change). It holds the manager's lock from entry to exit; inside a batch
    the change joins the batch when the block ends without an exception, and an exception
    marks the batch failed (all of it rolls back); outside, :meth:`OrderManager._own_change`."""

    __slots__ = ("_batch", "_change", "_oms", "_own")

    def __init__(self, oms: OrderManager) -> None:
        self._oms = oms
        self._own: AbstractContextManager[_Change] | None = None
        self._batch: _Batch | None = None

    def __enter__(self) -> _Change:
        oms = self._oms
        oms._lock.acquire()
        try:
            batch = oms._batch
            if batch is None:
                own = self._own = oms._own_change()
                return own.__enter__()
            self._own, self._batch = None, batch
            change = self._change = _Change(batch.conn, batch.audit)
            return change
        except BaseException:
            oms._lock.release()
            raise

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        """Never suppresses the block's exception (nor does :meth:`OrderManager._own_change`)."""
        oms = self._oms
        try:
            own = self._own
            if own is not None:
                own.__exit__(kind, exc, tb)  # commits, or rolls back and lets the exception go on
                return
            batch = self._batch
            assert batch is not None  # entered inside a batch
            if exc is not None:
                batch.failed = exc
                return
            change = self._change
            batch.changes.append(change)
            batch.note(change)
        finally:
            oms._lock.release()


class OrderManager:
    """The orders, positions and cash of one account, kept in the database behind ``engine``.

    Opening a manager reads the account's book from the database (:meth:`recover`). An account
    that does not exist yet is opened with ``initial_cash`` (in ``base_currency``); reopening it
    with another initial cash raises. ``actor`` names the manager in ``audit_log``.
    ``currencies``: each symbol's quote currency (as ``config/assets.yaml``'s ``currency:``); a
    symbol it does not name is quoted in the account's currency (see the module documentation for
    the FX booking).

    One manager per account per process keeps the in-memory view exact; several processes may
    share a database (each change is a compare-and-set on the order row), but a manager sees
    others' changes only after :meth:`recover`.

    Raises:
        LookupError: the account does not exist and no ``initial_cash`` was given.
        ValueError: the account exists with another initial cash or currency.
    """

    def __init__(
        self,
        engine: Engine,
        account: str,
        *,
        initial_cash: float | None = None,
        base_currency: str = "USD",
        actor: str = "oms",
        currencies: Mapping[str, str] | None = None,
    ) -> None:
        self._engine = engine
        self._account = account
        self._actor = actor
        self._lock = threading.RLock()
        self._open: dict[str, Order] = {}
        self._records: dict[str, OrderRecord] = {}  # the open orders as stored (by id)
        self._client_ids: dict[str, str] = {}  # client_order_id -> id, of the open orders
        self._batch: _Batch | None = None
        self._held: dict[int, Connection] = {}  # thread id -> the connection its session holds
        self._positions: dict[str, Position] = {}
        self._cash = 0.0
        with engine.begin() as conn:
            if initial_cash is not None:
                found = open_account(
                    conn, account, initial_cash=initial_cash, base_currency=base_currency, actor=actor
                )
            else:
                found_or_none = get_account(conn, account)
                if found_or_none is None:
                    raise LookupError(
                        f"account {account!r} does not exist; open it with `fks trade --paper --account "
                        f"{account}` (in code: OrderManager(..., initial_cash=...))"
                    )
                found = found_or_none
        self._base = found.base_currency.strip().upper()
        self._currencies = {
            symbol: _currency(code, f"currency of {symbol}") for symbol, code in (currencies or {}).items()
        }
        self.recover()

    @property
    def account(self) -> str:
        """The account this manager keeps."""
        return self._account

    @property
    def base_currency(self) -> str:
        """The account's currency: cash, marks and the ``*_base`` figures are in it."""
        return self._base

    def currency(self, symbol: str) -> str:
        """The quote currency of ``symbol`` (the account's when ``currencies`` did not name it)."""
        return self._currencies.get(symbol, self._base)

    def fx_rate(self, symbol: str, at: pd.Timestamp) -> float:
        """The account currency per unit of ``symbol``'s quote currency at ``at``: 1 for the
        account's own currency, else the close of the last FX bar completed at or before ``at``
        (what a fill at ``at`` is booked at).

        Raises:
            execution.fx.MissingFxRate: no FX bar of the pair has completed by ``at``; the
                message names the pair to ingest.
        """
        if self.currency(symbol) == self._base:
            return 1.0
        return self._on_store(lambda conn: self._rate(conn, symbol, as_utc(at, "at")))

    def fx_quote(self, symbol: str, at: pd.Timestamp) -> Quote | None:
        """The FX bar :meth:`fx_rate` converts ``symbol``'s price with at ``at`` (its ``closed_at``
        says how old the rate is: risk's ``stale_fx``); None for the account's own currency.

        Raises:
            execution.fx.MissingFxRate: as :meth:`fx_rate`.
        """
        if self.currency(symbol) == self._base:
            return None
        return self._on_store(lambda conn: self._fx_quote(conn, symbol, as_utc(at, "at"))[0])

    def _on_store(self, body: Callable[[Connection], _T]) -> _T:
        """``body(conn)`` on the open batch's connection (e.g. inside the paper broker's booking),
        else on a connection of its own."""
        with self._lock:
            batch = self._batch
            if batch is not None:
                return body(batch.conn)
        with self._engine.connect() as conn:
            return body(conn)

    def _rate(self, conn: Connection, symbol: str, at: pd.Timestamp) -> float:
        if self.currency(symbol) == self._base:
            return 1.0
        quote, inverse = self._fx_quote(conn, symbol, at)
        return 1.0 / quote.close if inverse else quote.close

    def _fx_quote(self, conn: Connection, symbol: str, at: pd.Timestamp) -> tuple[Quote, bool]:
        currency = self.currency(symbol)
        try:
            return _fx_quote(conn, currency, self._base, at, None)
        except MissingFxRate as exc:
            raise MissingFxRate(f"{symbol} is quoted in {currency}, account {self._account!r} in "
                                f"{self._base}: {exc}") from None  # fmt: skip

    # -- reading ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """Rebuild the in-memory view (open orders, positions, cash) from the database, as after
        a restart. Nothing is sent or changed: open orders stay as they are stored."""
        with self._lock:
            with self._engine.connect() as conn:
                records = list_orders(conn, self._account, statuses=[s.value for s in OPEN_STATES])
                positions = list_positions(conn, self._account)
                account = get_account(conn, self._account)
            if account is None:
                raise LookupError(f"account {self._account!r} does not exist")
            self._open = {r.id: _order(r) for r in records}
            self._records = {r.id: r for r in records}
            self._client_ids = {o.client_order_id: o.id for o in self._open.values()}
            self._positions = {p.symbol: p for p in positions}
            self._cash = account.cash

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The orders not yet in a final state, oldest first, optionally of one symbol."""
        with self._lock:
            orders = [o for o in self._open.values() if symbol is None or o.symbol == symbol]
        return sorted(orders, key=lambda o: (o.created_at, o.id))

    def order(self, order_id: str) -> Order:
        """The order ``order_id`` (open or not); like every method that takes an order id, it
        also takes the order's ``client_order_id`` (the id a broker knows it by).

        Raises:
            UnknownOrder: no order of this account has that id or client order id.
        """
        with self._lock:
            if order_id in self._open:
                return self._open[order_id]
        with self._engine.connect() as conn:
            return _order(self._load(conn, order_id, lock=False))

    def order_by_client_id(self, client_order_id: str) -> Order | None:
        """The order stored under ``client_order_id``, or None."""
        with self._engine.connect() as conn:
            record = find_order(conn, self._account, client_order_id)
        return None if record is None else _order(record)

    def positions(self) -> dict[str, Position]:
        """Every symbol this account traded -> its position (flat ones keep their realised P&L)."""
        with self._lock:
            return dict(self._positions)

    def cash(self) -> float:
        """The account's cash: initial cash plus every fill's cash flow (fees included)."""
        with self._lock:
            return self._cash

    def trading_state(self) -> TradingState:
        """The account's kill switch as stored."""
        with self._engine.connect() as conn:
            return get_trading_state(conn, self._account)

    # -- orders -----------------------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> Order:
        """Record ``request`` and mark it submitted (``NEW -> SUBMITTED``, one transaction): from
        now on the caller sends it to the broker, keyed by ``client_order_id``.

        Idempotent: a request whose ``client_order_id`` is stored already returns that order
        (whatever its state) and creates nothing.

        An order of a symbol quoted in another currency than the account's needs an FX bar
        completed by its decision time (``decided_at``, else now): without one it is refused with
        :class:`~execution.fx.MissingFxRate` and nothing is stored (its fills could not be booked).

        Raises:
            OrderConflict: the ``client_order_id`` names a different request.
            TradingHalted: the account is halted (a stored order is still returned).
            execution.fx.MissingFxRate: no FX rate for the symbol's currency; names the pair to ingest.
            ValueError: the request is for another account, or a bracket's prices are inverted.
        """
        if self.currency(request.symbol) != self._base:
            at = pd.Timestamp.now(tz="UTC") if request.decided_at is None else request.decided_at
            self.fx_rate(request.symbol, at)
        return self._create(request, None)

    def _grouped(
        self,
        items: Sequence[_I],
        plain: Callable[[_I], tuple[_G, Hashable] | None],
        group: Callable[[list[_G]], list[_R]],
        one: Callable[[_I], _R],
    ) -> list[_R]:
        """The list operations' loop, in one :meth:`batch`: each item of ``items`` that ``plain``
        takes (it returns the item for the group and its key) joins the current group, written by
        ``group``; any other item, or one whose key the group has already, ends the group (written
        first) and goes on its own by ``one``. The answers in the items' order."""
        answers: list[_R] = []
        with self.batch():
            pending: list[_G] = []
            keys: set[Hashable] = set()
            for item in items:
                fit = plain(item)
                if fit is not None and fit[1] not in keys:
                    pending.append(fit[0])
                    keys.add(fit[1])
                    continue
                answers += group(pending)
                pending, keys = [], set()
                answers.append(one(item))
            answers += group(pending)
        return answers

    def submit_many(self, requests: Sequence[OrderRequest]) -> list[Order]:
        """:meth:`submit` of each of ``requests``, in order, in one transaction (or in the open
        :meth:`batch`): a desk's orders of a cycle. The same rows and answers as submitting them
        one by one; the new orders of the account's own currency are inserted together (one
        ``executemany``), any other request (a client order id this manager holds or the list
        repeats, another currency, another account) on its own as :meth:`submit` does, and if a
        client order id of the group turns out stored already (by another process, or before a
        restart) the group is undone and each request submitted on its own.

        Raises:
            As :meth:`submit` (the batch is rolled back).
        """

        def plain(request: OrderRequest) -> tuple[OrderRequest, Hashable] | None:
            key = request.client_order_id
            if (
                request.account != self._account
                or self._currencies.get(request.symbol, self._base) != self._base
                or self._cached(key) is not None
            ):
                return None
            _check_bracket(request)
            return request, key

        return self._grouped(requests, plain, self._submit_group, self.submit)

    def _submit_group(self, requests: list[OrderRequest]) -> list[Order]:
        """Submit ``requests`` (new client order ids, this account, its currency) in one change."""
        if len(requests) < 2:
            return [self.submit(r) for r in requests]
        submitted = OrderStatus.SUBMITTED
        stored: list[OrderRecord] | None = None
        with self._change() as change:
            if not self._trading_state(change.conn).halted:
                records = [self._record(r, parent=None, status=submitted, refusal=None) for r in requests]
                stored = insert_orders_if_absent(
                    change.conn,
                    records,
                    actor=self._actor,
                    audit_rows=change.audit,
                    via=OrderStatus.NEW.value,
                )
            for record in stored or ():
                change.touch(record)
        if stored is None:  # halted, or a key stored already: each on its own (raises or answers)
            return [self.submit(r) for r in requests]
        return [change.view(r) for r in stored]

    def refuse(self, request: OrderRequest, code: str, reason: str) -> Order:
        """Record ``request`` as refused before it reached the broker (``NEW -> REJECTED``, a risk
        check's refusal), with the reason ``code`` (short, e.g. ``max_position``) and ``reason``
        (a sentence) on the order. Idempotent like :meth:`submit`; allowed while halted.

        Raises:
            OrderConflict: the ``client_order_id`` names a different request.
            ValueError: the request is for another account, or an empty code.
        """
        if not code or not isinstance(code, str):
            raise ValueError("a refusal needs a reason code (e.g. 'max_position')")
        return self._create(request, (code, reason))

    def accept(self, order_id: str) -> Order:
        """The broker took the order: ``SUBMITTED -> ACCEPTED``. A bracket child whose OCO sibling
        has filled meanwhile is cancelled at once (the returned order says ``CANCELLED``).

        Raises:
            UnknownOrder, IllegalTransition, StaleOrder.
        """
        with self._change() as change:
            conn = change.conn
            order = change.touch(self._move(change, order_id, OrderStatus.ACCEPTED))
            if any(s.status == OrderStatus.FILLED.value for s in self._siblings(conn, order)):
                why = {"why": "oco sibling filled"}
                order = change.touch(self._transition(change, order, OrderStatus.CANCELLED, details=why))
        return change.view(order)

    def accept_many(self, order_ids: Sequence[str]) -> list[Order]:
        """:meth:`accept` of each of ``order_ids``, in order, in one transaction (or in the open
        :meth:`batch`): the broker took them all. The same rows as accepting them one by one;
        the orders open here as ``SUBMITTED`` outside an OCO group are moved together (one
        ``executemany`` of their compare-and-sets: a desk's acks of a cycle), any other on its
        own as :meth:`accept` does, and if a row of the group moved meanwhile (another process)
        the group is undone and each order decided on its own.

        Raises:
            UnknownOrder, IllegalTransition, StaleOrder (the batch is rolled back).
        """
        submitted = OrderStatus.SUBMITTED.value

        def plain(order_id: str) -> tuple[OrderRecord, Hashable] | None:
            record = self._cached(order_id)
            if record is None or record.status != submitted or record.oco_group is not None:
                return None
            return record, record.id

        return self._grouped(order_ids, plain, self._accept_group, self.accept)

    def _accept_group(self, records: list[OrderRecord]) -> list[Order]:
        """Accept the ``SUBMITTED`` orders ``records`` (no OCO group) in one change."""
        if len(records) < 2:
            return [self.accept(r.id) for r in records]
        new = OrderStatus.ACCEPTED
        check_transition(records[0].id, OrderStatus.SUBMITTED, new)  # the same for every one
        with self._change() as change:
            moved = transition_orders(
                change.conn, records, new.value, actor=self._actor, audit_rows=change.audit
            )
            if moved is None:  # a row moved meanwhile: one by one, each decided on its stored row
                moved = [self._move(change, r.id, new) for r in records]
            for record in moved:
                change.touch(record)
        return [change.view(r) for r in moved]

    def reject(self, order_id: str, code: str, reason: str) -> Order:
        """The broker (or a late risk check) refused the order: ``-> REJECTED`` with reason ``code``
        and ``reason`` stored on it.

        Raises:
            UnknownOrder, IllegalTransition, StaleOrder; ValueError for an empty code.
        """
        if not code or not isinstance(code, str):
            raise ValueError("a rejection needs a reason code (e.g. 'insufficient_margin')")
        with self._change() as change:
            order = change.touch(
                self._move(change, order_id, OrderStatus.REJECTED, reject_code=code, reject_reason=reason)
            )
        return change.view(order)

    def cancel(self, order_id: str, reason: str | None = None) -> Order:
        """Cancel the order (``ACCEPTED``/``PARTIALLY_FILLED -> CANCELLED``). A bracket parent
        cancelled after partial fills places its children for the filled quantity.

        Raises:
            UnknownOrder, IllegalTransition, StaleOrder.
        """
        return self._finish(order_id, OrderStatus.CANCELLED, reason)

    def expire(self, order_id: str, reason: str | None = None) -> Order:
        """The order's time in force ran out (``ACCEPTED``/``PARTIALLY_FILLED -> EXPIRED``): a DAY
        order at the session's close, the rest of an IOC order. Brackets as :meth:`cancel`.

        Raises:
            UnknownOrder, IllegalTransition, StaleOrder.
        """
        return self._finish(order_id, OrderStatus.EXPIRED, reason)

    def apply_fill(self, fill: Fill, broker_fill_id: str) -> FillOutcome:
        """Apply one execution to its order, the position and cash, in one transaction
        (``-> PARTIALLY_FILLED`` or ``-> FILLED``). A filled bracket parent places its children;
        a filled bracket child cancels its open sibling.

        Idempotent by ``broker_fill_id``: a replay of a recorded fill changes nothing and comes
        back with ``duplicate=True``.

        A fill of a symbol quoted in another currency is booked at the FX rate of its ``ts`` (see
        the module documentation), stored on the fill.

        A fill is never lost: one that reaches an order already ``CANCELLED`` or ``EXPIRED`` here
        (the venue filled it before the cancel arrived, e.g. both OCO legs on one bar) is booked
        (fill, position, cash, filled quantity) and the order keeps its final state: no
        transition, ``late=True``. Close the excess position with a new order.

        ``fill.order_id`` is the OMS's order id or the order's ``client_order_id`` (as the paper
        broker reports it).

        Raises:
            UnknownOrder: ``fill.order_id`` is not an order of this account.
            IllegalTransition: the order cannot fill (not yet accepted, rejected, or filled).
            storage.execution.FillConflict: ``broker_fill_id`` was recorded with other values.
            execution.fx.MissingFxRate: no FX bar completed by the fill's time (nothing written).
            ValueError: the fill's symbol or side differ from the order's, or it overfills it.
        """
        with self._change() as change:
            conn = change.conn
            cached = self._cached(fill.order_id)
            order = cached if cached is not None else self._load(conn, fill.order_id)
            if fill.symbol != order.symbol or fill.side.value != order.side:
                raise ValueError(
                    f"fill for {fill.side.value} {fill.symbol} does not match order {order.id} "
                    f"({order.side} {order.symbol})"
                )
            foreign = self._currencies.get(order.symbol, self._base) != self._base
            rate = self._rate(conn, order.symbol, as_utc(fill.ts, "fill ts")) if foreign else 1.0
            # the fill's row first: its insert is the replay check (a recorded broker_fill_id
            # writes nothing), then the order from the cached row (no read) or, if that turns
            # out stale, from the row read and locked
            claimed = claim_fill(conn, order, broker_fill_id=broker_fill_id, quantity=fill.quantity,
                                 price=fill.price, fee=fill.fee, ts=fill.ts, fx_rate=rate)  # fmt: skip
            if claimed is None:
                self._store_cash(conn)  # the replay reports the cash as stored
                replay = replayed_fill(conn, order, broker_fill_id, quantity=fill.quantity, price=fill.price,
                                       fee=fill.fee, ts=fill.ts)  # fmt: skip
                return FillOutcome(_order(replay.order), replay.fill.id, True, replay.position, replay.cash)
            try:
                result, late = self._book(change, order, fill, broker_fill_id, rate, claimed)
            except (IllegalTransition, StaleOrder):
                if cached is None:
                    raise
                order = self._load(conn, fill.order_id)
                result, late = self._book(change, order, fill, broker_fill_id, rate, claimed)
            created: list[OrderRecord] = []
            cancelled: list[OrderRecord] = []
            if result.order.status == OrderStatus.FILLED.value and not late:
                created = self._place_children(change, result.order)
                cancelled = self._cancel_siblings(change, result.order)
            for record in (result.order, *created, *cancelled):
                change.touch(record)
            change.positions.append(result.position)
            change.cash = result.cash
        outcome = object.__new__(FillOutcome)  # every field set at once (a fill's hot path)
        outcome.__dict__.update(
            order=change.view(result.order),
            fill_id=result.fill.id,
            duplicate=False,
            position=result.position,
            cash=result.cash,
            created=tuple(change.view(r) for r in created) if created else (),
            cancelled=tuple(change.view(r) for r in cancelled) if cancelled else (),
            late=late,
        )
        return outcome

    def apply_fills(self, fills: Sequence[tuple[Fill, str]]) -> list[FillOutcome]:
        """:meth:`apply_fill` of each ``(fill, broker_fill_id)``, in order, in one transaction
        (or in the open :meth:`batch`): a desk's fills of a bar. The same rows and outcomes as
        applying them one by one; fills of open orders this manager holds, outside brackets, in
        the account's currency, each of another symbol, are booked together (the fills' inserts,
        the orders' and the positions' compare-and-sets one ``executemany`` each), any other
        fill on its own as :meth:`apply_fill` does, and if a fill of the group is a replay or a
        row moved meanwhile (another process) the group is undone and each fill booked on its own.

        Raises:
            As :meth:`apply_fill` (the batch is rolled back).
        """

        def plain(item: tuple[Fill, str]) -> tuple[tuple[OrderRecord, Fill, str], Hashable] | None:
            fill, broker_fill_id = item
            order = self._cached(fill.order_id)
            if (
                order is None
                or order.status not in _FILLABLE
                or order.symbol != fill.symbol
                or order.side != fill.side.value
                or order.oco_group is not None
                or order.take_profit is not None
                or order.stop_loss is not None
                or self._currencies.get(order.symbol, self._base) != self._base
            ):
                return None
            return (order, fill, broker_fill_id), order.symbol  # one fill per symbol in a group

        return self._grouped(fills, plain, self._fill_group, lambda item: self.apply_fill(*item))

    def _fill_group(self, group: list[tuple[OrderRecord, Fill, str]]) -> list[FillOutcome]:
        """Book the fills of ``group`` (see :meth:`apply_fills`) in one change."""
        if len(group) < 2:
            return [self.apply_fill(fill, key) for _, fill, key in group]
        batch = self._batch
        assert batch is not None  # apply_fills opens one
        results: list[BookedFill] | None = None
        with self._change() as change:
            cash_before = self._known_cash()
            orders = [order for order, _, _ in group]  # each in a _FILLABLE state: the move is legal
            results = record_fills(
                change.conn,
                orders,
                [(key, fill.quantity, fill.price, fill.fee, fill.ts) for _, fill, key in group],
                [self._position(order.symbol) for order in orders],
                actor=self._actor,
                cash_before=cash_before,
                audit_rows=change.audit,
            )
            if results is not None:
                if batch.cash_was is None:
                    batch.cash_was = cash_before
                for result in results:
                    change.touch(result.order)
                    change.positions.append(result.position)
                change.cash = results[-1].cash
        if results is None:  # a replay or a moved row: each on its own (judged as apply_fill does)
            return [self.apply_fill(fill, key) for _, fill, key in group]
        outcomes = []
        for result in results:
            outcome = object.__new__(FillOutcome)  # every field set at once (a fill's hot path)
            outcome.__dict__.update(
                order=change.view(result.order), fill_id=result.fill_id, duplicate=False,
                position=result.position, cash=result.cash, created=(), cancelled=(), late=False,
            )  # fmt: skip
            outcomes.append(outcome)
        return outcomes

    def _book(
        self,
        change: _Change,
        order: OrderRecord,
        fill: Fill,
        broker_fill_id: str,
        rate: float,
        claimed: ClaimedFill,
    ) -> tuple[FillResult, bool]:
        """Book the claimed fill on ``order`` (as read or cached): the checked transition, the
        order, position, cash and audit rows; the result and whether it was a late fill."""
        late = order.status in LATE_FILL_STATUSES
        if late:  # the venue filled it before our cancel or expiry reached it: book it anyway
            status = OrderStatus(order.status)
        else:
            done = fill_completes(order, fill.quantity)
            status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
            check_transition(order.id, OrderStatus(order.status), status)
        batch = self._batch
        cash_before = None
        if batch is not None:  # the batch writes the account's cash once, before it commits
            cash_before = self._known_cash()
            if batch.cash_was is None:
                batch.cash_was = cash_before
        result = record_fill(change.conn, order, broker_fill_id=broker_fill_id, quantity=fill.quantity,
                             price=fill.price, fee=fill.fee, ts=fill.ts, status=status.value,
                             actor=self._actor, fx_rate=rate, audit_rows=change.audit, claimed=claimed,
                             position=self._position(order.symbol), cash_before=cash_before)  # fmt: skip
        return result, late

    # -- marks and the kill switch ----------------------------------------------------------------

    def mark_to_market(self, prices: Mapping[str, float], ts: pd.Timestamp) -> EquityPoint:
        """Record the account's equity at ``ts`` (table ``equity_history``): cash plus each
        position's quantity times its price in ``prices`` (quote currency) times the FX rate at
        ``ts`` of a symbol quoted in another currency (:meth:`fx_rate`). Cash and positions are
        the manager's books (as it committed them, and inside a batch as the batch left them),
        which are the stored ones: nothing is read back.

        Raises:
            ValueError: a price is missing, non-positive or not finite for a symbol held.
            execution.fx.MissingFxRate: no FX bar completed by ``ts`` for a foreign symbol held.
        """
        with self._change() as change:
            conn = change.conn
            market_value = 0.0
            batch = self._batch
            held = {**self._positions, **(batch.positions if batch is not None else {})}
            cash = self._known_cash()
            for symbol in sorted(held):  # by symbol, as the stored positions read
                position = held[symbol]
                if position.quantity == 0:
                    continue
                price = prices.get(position.symbol)
                if price is None or not math.isfinite(price) or price <= 0:
                    raise ValueError(
                        f"no usable price for {position.symbol} (held: {position.quantity:g}); got {price!r}"
                    )
                market_value += position.quantity * float(price) * self._rate(conn, position.symbol, ts)
            return record_equity(conn, self._account, ts=ts, market_value=market_value, cash=cash)

    def halt(self, reason: str) -> TradingState:
        """Halt trading of the account (audited): no new order is taken until :meth:`resume`.
        Open orders stay; :meth:`kill` also cancels them."""
        return self._set_trading_state(True, reason)

    def kill(self, reason: str) -> tuple[TradingState, list[Order]]:
        """The kill switch: :meth:`halt`, then cancel every open order (each cancel audited).
        A broker holding the orders must be told too (the flow cancels them there).

        Returns:
            The trading state and the orders cancelled.
        """
        state = self.halt(reason)
        cancelled = [self.cancel(order.id, reason=f"halted: {reason}") for order in self.open_orders()]
        return state, cancelled

    def resume(self, reason: str | None = None) -> TradingState:
        """Resume trading of the account (audited)."""
        return self._set_trading_state(False, reason)

    def _set_trading_state(self, halted: bool, reason: str | None) -> TradingState:
        """Halt or resume (audited), in the current batch if there is one."""
        with self._change() as change:
            state = set_trading_state(
                change.conn, self._account, halted=halted, reason=reason, actor=self._actor
            )
            if self._batch is not None:
                self._batch.trading = state
        return state

    # -- internals --------------------------------------------------------------------------------

    def _create(self, request: OrderRequest, refusal: tuple[str, str] | None) -> Order:
        if request.account != self._account:
            raise ValueError(
                f"request {request.client_order_id!r} is for account {request.account!r}; "
                f"this manager keeps {self._account!r}"
            )
        _check_bracket(request)
        try:
            with self._change() as change:
                conn = change.conn
                cached = self._cached(request.client_order_id)
                if cached is not None and cached.client_order_id == request.client_order_id:
                    return self._same_request(change.view(cached), request)
                state = self._trading_state(conn)
                if refusal is None and state.halted:
                    stored = find_order(conn, self._account, request.client_order_id)
                    if stored is not None:
                        return self._same_request(_order(stored), request)
                    raise TradingHalted(
                        f"account {self._account!r} is halted ({state.reason}); "
                        f"order {request.client_order_id!r} was not taken; `fks resume` to trade again"
                    )
                status = OrderStatus.SUBMITTED if refusal is None else OrderStatus.REJECTED
                # stored already under this client order id (by us before a restart, or another
                # process): the insert writes nothing and the stored order answers
                inserted = self._insert(change, request, parent=None, status=status, refusal=refusal,
                                        if_absent=True)  # fmt: skip
                if inserted is None:
                    stored = find_order(conn, self._account, request.client_order_id)
                    if stored is None:  # pragma: no cover - the insert found it (or its id)
                        raise RuntimeError(f"order {request.client_order_id!r} conflicted but is not stored")
                    return self._same_request(_order(stored), request)
                record = change.touch(inserted)
        except IntegrityError:
            # another process stored the same client order id between our read and our insert
            with self._engine.connect() as conn:
                stored = find_order(conn, self._account, request.client_order_id)
            if stored is None:
                raise
            return self._same_request(_order(stored), request)
        return change.view(record)

    def _trading_state(self, conn: Connection) -> TradingState:
        """The kill switch, read once per batch (every change of a batch commits at one time)."""
        batch = self._batch
        if batch is None:
            return get_trading_state(conn, self._account)
        if batch.trading is None:
            batch.trading = get_trading_state(conn, self._account)
        return batch.trading

    def _same_request(self, stored: Order, request: OrderRequest) -> Order:
        differences = _differences(stored, request)
        if differences:
            raise OrderConflict(
                f"client_order_id {request.client_order_id!r} is order {stored.id} already, for another "
                f"request ({'; '.join(differences)}); use a new client_order_id for a new order"
            )
        return stored

    def _insert(
        self,
        change: _Change,
        request: OrderRequest,
        *,
        parent: OrderRecord | None,
        status: OrderStatus = OrderStatus.NEW,
        refusal: tuple[str, str] | None = None,
        details: Mapping[str, object] | None = None,
        if_absent: bool = False,
    ) -> OrderRecord | None:
        """Insert the order ``NEW`` and, when ``status`` is another, move it there in the same
        statement (``NEW -> SUBMITTED`` at submit, ``NEW -> REJECTED`` for a refusal): the
        transition is checked and audited as a transition of its own (see
        :func:`storage.execution.insert_order`'s ``via``). ``if_absent``: None (nothing written)
        when its client order id is stored already (:func:`storage.execution.insert_order_if_absent`)."""
        record = self._record(request, parent=parent, status=status, refusal=refusal)
        via = None if status is OrderStatus.NEW else OrderStatus.NEW.value
        insert = insert_order_if_absent if if_absent else insert_order
        return insert(change.conn, record, actor=self._actor, audit_rows=change.audit, via=via,
                      details=details)  # fmt: skip

    def _record(
        self,
        request: OrderRequest,
        *,
        parent: OrderRecord | None,
        status: OrderStatus,
        refusal: tuple[str, str] | None,
    ) -> OrderRecord:
        """A new order of ``request`` in ``status`` (checked as a move from ``NEW``), stamped now."""
        now = stamp_now()  # to the millisecond, as stored: the record is the row as it reads back
        order_id = new_order_id(now)
        if status is not OrderStatus.NEW:
            check_transition(order_id, OrderStatus.NEW, status)
        # the record's fields set at once (a frozen dataclass's __init__ sets them one by one)
        record = object.__new__(OrderRecord)
        record.__dict__.update(
            id=order_id,
            client_order_id=request.client_order_id,
            account=self._account,
            symbol=request.symbol,
            side=request.side.value,
            type=request.type.value,
            time_in_force=request.time_in_force.value,
            quantity=float(request.quantity),
            status=status.value,
            created_at=now,
            updated_at=now,
            filled_quantity=0.0,
            avg_fill_price=None,
            limit_price=request.limit_price,
            stop_price=request.stop_price,
            take_profit=request.take_profit,
            stop_loss=request.stop_loss,
            parent_id=None if parent is None else parent.id,
            oco_group=None if parent is None else parent.id,
            reject_code=None if refusal is None else refusal[0],
            reject_reason=None if refusal is None else str(refusal[1]),
            model=request.model,
            model_version=request.model_version,
            confidence=request.confidence,
            decided_at=request.decided_at,
        )
        return record

    def _load(self, conn: Connection, order_id: str, *, lock: bool = True) -> OrderRecord:
        """The order by the OMS's id or, failing that, by its ``client_order_id`` (the id a broker
        knows it by); ``lock``: row-locked until the transaction ends."""
        record = get_order(conn, self._client_ids.get(order_id, order_id), for_update=lock)
        if record is None or record.account != self._account:
            record = find_order(conn, self._account, order_id, for_update=lock)
        if record is None:
            raise UnknownOrder(
                f"account {self._account!r} has no order with id or client_order_id {order_id!r}"
            )
        return record

    def _cached(self, order_id: str) -> OrderRecord | None:
        """The order by id or client order id as this manager wrote it last (the batch's own
        writes first, then the committed open orders), or None when it is not open here. A
        change starts from it instead of reading the row: its compare-and-set still fails if the
        row moved meanwhile (another process), and then the change reads the row and decides anew."""
        batch = self._batch
        if batch is not None:
            record = batch.records.get(batch.client_ids.get(order_id, order_id))
            if record is not None:
                return record
        return self._records.get(self._client_ids.get(order_id, order_id))

    def _known_cash(self) -> float:
        """The account's cash as this manager left it last (the open batch's, else the view's)."""
        batch = self._batch
        return self._cash if batch is None or batch.cash is None else batch.cash

    def _position(self, symbol: str) -> Position | None:
        """The position of ``symbol`` as this manager wrote it last (None: never traded here)."""
        batch = self._batch
        if batch is not None and symbol in batch.positions:
            return batch.positions[symbol]
        return self._positions.get(symbol)

    def _move(self, change: _Change, order_id: str, new: OrderStatus, **fields: Any) -> OrderRecord:
        """:meth:`_transition` of the order ``order_id``, from the cached row when there is one (no
        read); if that row turns out stale (moved by another process: the check or the
        compare-and-set fails, nothing written), from the row read and locked."""
        cached = self._cached(order_id)
        if cached is not None:
            try:
                return self._transition(change, cached, new, **fields)
            except (IllegalTransition, StaleOrder):
                pass  # decided again on the stored row below
        return self._transition(change, self._load(change.conn, order_id), new, **fields)

    def _transition(
        self,
        change: _Change,
        record: OrderRecord,
        new: OrderStatus,
        *,
        reject_code: str | None = None,
        reject_reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> OrderRecord:
        """The one place (with :meth:`apply_fill`) where an order's status changes."""
        check_transition(record.id, OrderStatus(record.status), new)
        return transition_order(change.conn, record, new.value, actor=self._actor, reject_code=reject_code,
                                reject_reason=reject_reason, details=details,
                                audit_rows=change.audit)  # fmt: skip

    def _finish(self, order_id: str, status: OrderStatus, reason: str | None) -> Order:
        with self._change() as change:
            details = None if reason is None else {"reason": reason}
            order = change.touch(self._move(change, order_id, status, details=details))
            for child in self._place_children(change, order):
                change.touch(child)
        return change.view(order)

    def _siblings(self, conn: Connection, order: OrderRecord) -> list[OrderRecord]:
        if order.oco_group is None:
            return []
        group = list_orders(conn, self._account, oco_group=order.oco_group)
        return [o for o in group if o.id != order.id]

    def _cancel_siblings(self, change: _Change, filled: OrderRecord) -> list[OrderRecord]:
        """Cancel the accepted OCO siblings of a filled bracket child (one not yet accepted is
        cancelled by :meth:`accept`)."""
        if filled.oco_group is None:
            return []
        cancellable = (OrderStatus.ACCEPTED.value, OrderStatus.PARTIALLY_FILLED.value)
        return [
            self._transition(
                change, s, OrderStatus.CANCELLED, details={"why": "oco sibling filled", "filled": filled.id}
            )
            for s in self._siblings(change.conn, filled)
            if s.status in cancellable
        ]

    def _place_children(self, change: _Change, parent: OrderRecord) -> list[OrderRecord]:
        """A done bracket parent's take-profit and stop-loss, submitted, for its filled quantity."""
        if (parent.take_profit is None and parent.stop_loss is None) or parent.filled_quantity <= 0:
            return []
        exit_side = Side.SELL if parent.side == Side.BUY.value else Side.BUY
        legs = []
        if parent.take_profit is not None:
            legs.append(("tp", OrderType.LIMIT, {"limit_price": parent.take_profit}))
        if parent.stop_loss is not None:
            legs.append(("sl", OrderType.STOP, {"stop_price": parent.stop_loss}))
        children = []
        for leg, kind, price in legs:
            request = OrderRequest(
                client_order_id=f"{parent.id}-{leg}",
                account=self._account,
                symbol=parent.symbol,
                side=exit_side,
                quantity=parent.filled_quantity,
                type=kind,
                time_in_force=TimeInForce.GTC,
                model=parent.model,
                model_version=parent.model_version,
                confidence=parent.confidence,
                decided_at=parent.decided_at,
                **price,
            )
            child = self._insert(change, request, parent=parent, status=OrderStatus.SUBMITTED,
                                 details={"bracket_of": parent.id})  # fmt: skip
            assert child is not None  # a plain insert (not if_absent) returns the row or raises
            children.append(child)
        return children

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the changes inside the block one transaction: each still writes its rows and its
        ``audit_log`` rows as on its own (every transition and fill persisted, in order), and
        all of them commit together when the block ends (the audit rows in one ``executemany``),
        or none does. One commit and one connection checkout instead of one per change: the desk
        books a cycle's fills, and records a cycle's orders, in one batch each. The fills' cash
        is the exception: each fill reports the cash after it, and the batch writes the account's
        cash once, before it commits (:func:`storage.execution.set_cash`; if another process
        moved it since this manager read it, the batch's flows are added to what it holds, and
        the view takes that).

        The in-memory view (open orders, positions, cash) changes only after the commit, so
        inside the block it shows the state before it; changes inside start from the batch's
        own writes (kept by the batch) or, for what it has not written, from the view or the
        database. An exception raised by a change rolls back the whole batch;
        if the block catches it, the batch re-raises it when the block ends. A batch inside a
        batch joins the outer one. Send nothing to a real venue inside a batch that the batch
        records as sent (record first, commit, then send): a crash before the commit forgets it.
        The paper desk sends to its paper broker inside the batch: that broker's book is saved
        with the desk's finished cycle, so a crash forgets both (:mod:`execution.desk`)."""
        with self._lock:
            if self._batch is not None:
                yield
                return
            committed: list[_Change] = []
            try:
                with self._transaction() as conn:
                    _tune(conn)
                    batch = self._batch = _Batch(conn)
                    yield
                    if batch.failed is not None:
                        raise batch.failed
                    self._store_cash(conn)
                    write_audit_rows(conn, batch.audit)  # in the transaction, before its commit
                committed = batch.changes
            finally:
                self._batch = None
            for change in committed:
                self._apply(change)
            if batch.cash is not None:
                self._cash = batch.cash  # as stored (another writer's move included, if any)

    def _store_cash(self, conn: Connection) -> None:
        """Write the account's cash as the open batch's fills left it, if they have not yet
        (:func:`storage.execution.set_cash`: one statement for the batch, not one per fill)."""
        batch = self._batch
        if batch is None or batch.cash_was is None or batch.cash is None:
            return
        batch.cash = set_cash(conn, self._account, cash=batch.cash, was=batch.cash_was)
        batch.cash_was = None

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one database connection for the block: the manager's transactions inside it
        (each change, each :meth:`batch`) run on it, one after the other, instead of taking a
        connection from the engine's pool for each (one checkout, not one per transaction: the
        desk holds one per cycle, a replay one for the whole replay). Only transactions of the
        thread that opened the session use it; a session inside a session joins it. Nothing else
        changes: each transaction still commits on its own, and between them the connection holds
        no lock (an idle SQLite connection blocks no writer)."""
        thread = threading.get_ident()
        if thread in self._held:
            yield
            return
        with self._engine.connect() as conn:
            self._held[thread] = conn
            try:
                yield
            finally:
                del self._held[thread]

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction on the connection this thread's :meth:`session` holds, else on one of
        the engine's; committed when the block ends, rolled back if it raises."""
        held = self._held.get(threading.get_ident()) if self._held else None
        if held is None:
            with self._engine.begin() as conn:
                yield conn
            return
        with held.begin():
            yield held

    def _change(self) -> _ChangeScope:
        """One transaction whose touched orders, position and cash enter the in-memory view once
        it has committed (under the manager's lock: the view never shows an uncommitted state);
        inside :meth:`batch`, a part of the batch's transaction (a change that raises fails the
        batch). A context manager: ``with self._change() as change``."""
        return _ChangeScope(self)

    @contextmanager
    def _own_change(self) -> Iterator[_Change]:
        """:meth:`_change` outside a batch: its own transaction (the caller holds the lock)."""
        with self._transaction() as conn:
            _tune(conn)
            change = _Change(conn)
            yield change
            write_audit_rows(conn, change.audit)  # in the transaction, before its commit
        self._apply(change)

    def _apply(self, change: _Change) -> None:
        """A committed change into the in-memory view."""
        for record in change.orders:
            order = change.view(record)
            if order.is_open:
                self._open[order.id] = order
                self._records[order.id] = record
                self._client_ids[order.client_order_id] = order.id
            else:
                self._open.pop(order.id, None)
                self._records.pop(order.id, None)
                self._client_ids.pop(order.client_order_id, None)
        for position in change.positions:
            self._positions[position.symbol] = position
        if change.cash is not None:
            self._cash = change.cash
