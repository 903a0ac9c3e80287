"""The paper desk's books: accounts, orders, fills, positions, equity history and the kill switch
(tables ``accounts``, ``orders``, ``fills``, ``positions``, ``equity_history``, ``trading_state``).

Every function takes a connection; the caller owns the transaction. The order management system
(:mod:`execution.oms`) opens one transaction per state change (or per batch of them) and, on
the order row as it knows it (as it last wrote it, or read in that transaction with
``get_order(..., for_update=True)``), checks the transition with
:func:`execution.orders.check_transition` before calling :func:`transition_order` or
:func:`record_fill`. Both write compare-and-set: the row is updated only if its status and filled
quantity are still what the caller has (else :class:`StaleOrder`, nothing written), so a check
made on it still holds at commit. Each change writes its ``audit_log`` rows on the same
connection: kept or rolled back together. The idempotency keys are checked by the inserts
themselves where the dialect has ``INSERT .. ON CONFLICT DO NOTHING`` (SQLite, PostgreSQL):
:func:`insert_order_if_absent` and :func:`claim_fill` write nothing for a stored key.

Statuses, types, times in force and sides are the string values of :mod:`execution.orders`'
enums (storage sits below execution; :data:`storage.schema.ORDER_STATUSES` and friends list them).

Accounting (average cost): a fill of signed quantity ``s`` (``+`` buy, ``-`` sell) at ``price``
with ``fee`` (both in the asset's quote currency) and ``fx_rate`` (account currency per unit of
quote currency at the fill; 1 when the asset is quoted in the account's currency) moves cash, kept
in the account's currency, by ``(-s * price - fee) * fx_rate``, and the position as
:func:`position_after` says, twice: in the quote currency at ``price`` (``avg_cost``,
``realised_pnl``) and in the account's currency at ``price * fx_rate`` (``avg_cost_base``,
``realised_pnl_base``, as brokers book a foreign position: its realised P&L in base includes the
FX move between entry and exit). Adding to a position averages the entry price; reducing it
realises ``closed * (price - avg_cost) * sign(position)`` and keeps the average; going through
zero closes the old side and opens the rest at ``price``. Realised P&L is gross of fees (fees are
in cash and in ``fills``), so at any time, in the account's currency, ``cash + sum(quantity *
avg_cost_base) = initial_cash + sum(realised_pnl_base) - sum(fee * fx_rate)``.

::

    with engine.begin() as conn:
        open_account(conn, "paper", initial_cash=100_000.0, actor="me")
        get_trading_state(conn, "paper").halted          # False
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

import pandas as pd
from sqlalchemy import Connection, Float, Table, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage import _driver
from storage._time import NS_PER_MS, from_ms, now_ms, optional_ms, to_ms
from storage.audit import audit, audit_row, write_audit_rows
from storage.schema import (
    OPEN_ORDER_STATUSES,
    OPEN_ORDERS_WHERE,
    ORDER_STATUSES,
    ORDER_TYPES,
    SIDES,
    TIMES_IN_FORCE,
    AccountRow,
    EquityHistoryRow,
    FillRow,
    OrderRow,
    PositionRow,
    TradingStateRow,
)

_ORDERS = cast(Table, OrderRow.__table__)
_FILLS = cast(Table, FillRow.__table__)
_POSITIONS = cast(Table, PositionRow.__table__)
_ACCOUNTS = cast(Table, AccountRow.__table__)
_EQUITY = cast(Table, EquityHistoryRow.__table__)
_STATE = cast(Table, TradingStateRow.__table__)

# Statements of the hot paths, built once (their compiled form is cached by SQLAlchemy): the
# values travel as execute() parameters, the SQL is the same as building them per call.
_INSERT_ORDER = insert(_ORDERS)
_INSERT_FILL = insert(_FILLS)
_INSERT_POSITION = insert(_POSITIONS)
_GET_ORDER = select(_ORDERS).where(_ORDERS.c.id == bindparam("_id"))
_GET_ORDER_FOR_UPDATE = _GET_ORDER.with_for_update()
_FIND_ORDER = select(_ORDERS).where(
    _ORDERS.c.account == bindparam("_account"), _ORDERS.c.client_order_id == bindparam("_client_order_id")
)
_FIND_ORDER_FOR_UPDATE = _FIND_ORDER.with_for_update()
_POSITIONS_OF = select(_POSITIONS).where(_POSITIONS.c.account == bindparam("_account"))
_ALL_POSITIONS = _POSITIONS_OF.order_by(_POSITIONS.c.symbol)
_OPEN_POSITIONS = _POSITIONS_OF.where(_POSITIONS.c.quantity != 0).order_by(_POSITIONS.c.symbol)
_EQUITY_WHERE = (_EQUITY.c.account == bindparam("_account"), _EQUITY.c.ts == bindparam("_ts"))
_EQUITY_MARKED = select(_EQUITY.c.ts).where(*_EQUITY_WHERE)
_INSERT_EQUITY = insert(_EQUITY)
_UPDATE_EQUITY = update(_EQUITY).where(*_EQUITY_WHERE)
_UPSERT_EQUITY = {  # one statement where the dialect has INSERT .. ON CONFLICT DO UPDATE
    name: stmt.on_conflict_do_update(
        index_elements=[_EQUITY.c.account, _EQUITY.c.ts],
        set_={c: stmt.excluded[c] for c in ("cash", "market_value", "equity")},
    )
    for name, stmt in (("sqlite", sqlite_insert(_EQUITY)), ("postgresql", pg_insert(_EQUITY)))
}
_GET_STATE = select(_STATE).where(_STATE.c.account == bindparam("_account"))
_GET_ACCOUNT = select(_ACCOUNTS).where(_ACCOUNTS.c.name == bindparam("_name"))
_GET_ACCOUNT_FOR_UPDATE = _GET_ACCOUNT.with_for_update()
_FIND_FILL = select(_FILLS).where(
    _FILLS.c.account == bindparam("_account"), _FILLS.c.broker_fill_id == bindparam("_broker_fill_id")
)
_GET_POSITION = select(_POSITIONS).where(
    _POSITIONS.c.account == bindparam("_account"), _POSITIONS.c.symbol == bindparam("_symbol")
)
_GET_POSITION_FOR_UPDATE = _GET_POSITION.with_for_update()
_UPDATE_POSITION = update(_POSITIONS).where(
    _POSITIONS.c.account == bindparam("_account"), _POSITIONS.c.symbol == bindparam("_symbol")
)
_MOVE_CASH = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.name == bindparam("_name"))
    .values(cash=_ACCOUNTS.c.cash + bindparam("_cash_flow", type_=Float()))
)
_MOVE_CASH_RETURNING = _MOVE_CASH.returning(_ACCOUNTS.c.cash)  # where the dialect has UPDATE..RETURNING
_SET_CASH = update(_ACCOUNTS).where(
    _ACCOUNTS.c.name == bindparam("_name"), _ACCOUNTS.c.cash == bindparam("_was", type_=Float())
)
# compare-and-set: the SET columns are the parameters' keys (plus updated_at)
_COMPARE_AND_SET = update(_ORDERS).where(
    _ORDERS.c.id == bindparam("_id"),
    _ORDERS.c.status == bindparam("_status"),
    _ORDERS.c.filled_quantity == bindparam("_filled_quantity"),
)

_INSERT_FILL_RETURNING = _INSERT_FILL.returning(_FILLS.c.id)

# Idempotent inserts (one statement: an existing key writes nothing and reports no row), where the
# dialect has INSERT .. ON CONFLICT DO NOTHING.
_INSERT_ORDER_IF_ABSENT = {
    "sqlite": sqlite_insert(_ORDERS).on_conflict_do_nothing(),
    "postgresql": pg_insert(_ORDERS).on_conflict_do_nothing(),
}
_FILL_KEY = [_FILLS.c.account, _FILLS.c.broker_fill_id]  # a broker's fill ids are unique per account
_INSERT_FILL_IF_ABSENT = {
    "sqlite": sqlite_insert(_FILLS).on_conflict_do_nothing(index_elements=_FILL_KEY),
    "postgresql": pg_insert(_FILLS).on_conflict_do_nothing(index_elements=_FILL_KEY),
}
_INSERT_FILL_IF_ABSENT_RETURNING = {k: v.returning(_FILLS.c.id) for k, v in _INSERT_FILL_IF_ABSENT.items()}
_INSERT_POSITION_IF_ABSENT = {
    "sqlite": sqlite_insert(_POSITIONS).on_conflict_do_nothing(),
    "postgresql": pg_insert(_POSITIONS).on_conflict_do_nothing(),
}
# a position's compare-and-set: the row is updated only if it still holds what the caller knows
_POSITION_KNOWN = ("quantity", "avg_cost", "realised_pnl", "avg_cost_base", "realised_pnl_base")
_POSITION_WAS = tuple(f"_was_{name}" for name in _POSITION_KNOWN)
_UPDATE_KNOWN_POSITION = _UPDATE_POSITION.where(
    *(
        _POSITIONS.c[name] == bindparam(was, type_=Float())
        for name, was in zip(_POSITION_KNOWN, _POSITION_WAS, strict=True)
    )
)

# The hot statements run on the driver's cursor (see storage._driver).
_one = _driver.one
_write = _driver.write


# -- times ----------------------------------------------------------------------------------------
# The store's epoch milliseconds (storage._time), with the desk's common cases made cheap: a
# pd.Timestamp's instant is its ``value`` (ns since the epoch, whatever its zone or unit), and a
# mark, a fill and its order are stamped with the same few milliseconds again and again.


@functools.lru_cache(maxsize=4096)
def _stamp(ms: int) -> pd.Timestamp:
    """:func:`storage._time.from_ms`, memoised (timestamps are immutable)."""
    return from_ms(ms)


def _ms(value: Any, what: str = "timestamp") -> int:
    """:func:`storage._time.to_ms`; a ``pd.Timestamp`` without the conversion to UTC."""
    if type(value) is pd.Timestamp:
        return int(value.value // NS_PER_MS)
    return to_ms(value, what)


def _optional_ms(value: Any) -> int | None:
    return None if value is None else _ms(value) if type(value) is pd.Timestamp else optional_ms(value)


def _optional_stamp(ms: int | None) -> pd.Timestamp | None:
    return None if ms is None else _stamp(ms)


LATE_FILL_STATUSES: tuple[str, ...] = ("cancelled", "expired")
"""Final statuses that a venue's fill can still reach (a cancel or an expiry that crossed the
fill): such a fill is recorded and the order keeps its status (see :func:`record_fill`)."""

QUANTITY_TOLERANCE = 1e-9
"""Relative tolerance below which a quantity counts as zero, or a fill as completing its order."""


class StaleOrder(RuntimeError):
    """The order's row changed between the caller's read and its write (another process moved
    it). Nothing was written; read the order again and decide anew."""


class FillConflict(ValueError):
    """A ``broker_fill_id`` that is already recorded came again with other values (order,
    quantity, price, fee or time): two different executions under one id."""


@dataclass(frozen=True)
class Account:
    """One account: ``cash`` now and ``initial_cash`` at opening, in ``base_currency``."""

    name: str
    base_currency: str
    initial_cash: float
    cash: float
    created_at: pd.Timestamp


@dataclass(frozen=True)
class OrderRecord:
    """One row of ``orders`` (see :class:`storage.schema.OrderRow`); enums as their string
    values, times as UTC timestamps."""

    id: str
    client_order_id: str
    account: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: float
    status: str
    created_at: pd.Timestamp
    updated_at: pd.Timestamp
    filled_quantity: float = 0.0
    avg_fill_price: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    take_profit: float | None = None
    stop_loss: float | None = None
    parent_id: str | None = None
    oco_group: str | None = None
    reject_code: str | None = None
    reject_reason: str | None = None
    model: str | None = None
    model_version: str | None = None
    confidence: float | None = None
    decided_at: pd.Timestamp | None = None

    @property
    def remaining(self) -> float:
        """Units still to fill."""
        return max(self.quantity - self.filled_quantity, 0.0)


@dataclass(frozen=True)
class FillRecord:
    """One row of ``fills``: ``quantity`` units at ``price`` with ``fee``; ``ts`` the execution
    time, ``recorded_at`` when it was stored (UTC)."""

    id: int
    order_id: str
    account: str
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    ts: pd.Timestamp
    broker_fill_id: str
    recorded_at: pd.Timestamp
    fx_rate: float = 1.0
    """Account currency per unit of the quote currency of ``price`` and ``fee`` at the fill."""

    @property
    def signed_quantity(self) -> float:
        """``+quantity`` for a buy, ``-quantity`` for a sell."""
        return self.quantity if self.side == "buy" else -self.quantity


@dataclass(frozen=True)
class Position:
    """What ``account`` holds of ``symbol``: ``quantity`` units (negative when short) at average
    entry ``avg_cost`` (0 when flat); ``realised_pnl`` gross of fees; both in the symbol's quote
    currency. ``avg_cost_base`` and ``realised_pnl_base`` are the same in the account's currency,
    each fill converted at its own rate (None for a position not booked by the OMS, e.g. built by
    hand: a valuation then converts ``avg_cost`` and ``realised_pnl`` at its own rate)."""

    account: str
    symbol: str
    quantity: float
    avg_cost: float
    realised_pnl: float
    updated_at: pd.Timestamp
    avg_cost_base: float | None = None
    realised_pnl_base: float | None = None


@dataclass(frozen=True)
class FillResult:
    """What :func:`record_fill` did: the fill (new or, when ``duplicate``, the one recorded
    before), the order, the position and the account's cash after it."""

    fill: FillRecord
    order: OrderRecord
    position: Position
    cash: float
    duplicate: bool


@dataclass(frozen=True)
class EquityPoint:
    """One mark of an account at ``ts``: ``equity = cash + market_value``."""

    account: str
    ts: pd.Timestamp
    cash: float
    market_value: float
    equity: float


@dataclass(frozen=True)
class TradingState:
    """The kill switch of one account; ``at`` is None when it was never set."""

    account: str
    halted: bool
    reason: str | None
    at: pd.Timestamp | None


# -- helpers --------------------------------------------------------------------------------------


def _text(name: str, value: object, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name} must be at most {max_len} characters, got {len(value)}")
    return value


def _positive(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _is_zero(value: float, scale: float) -> bool:
    return abs(value) <= QUANTITY_TOLERANCE * max(1.0, abs(scale))


AuditRows = list[dict[str, Any]]
"""Audit rows collected for a change (see :func:`storage.audit.audit_row`), written by the caller
with :func:`storage.audit.write_audit_rows` on the change's connection before it commits."""


def _emit(conn: Connection, rows: AuditRows, into: AuditRows | None) -> None:
    """Write ``rows`` now (one execution), or add them to the caller's ``into``."""
    if into is None:
        write_audit_rows(conn, rows)
    else:
        into.extend(rows)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _storable(*values: object) -> bool:
    """True when every float among ``values`` reads back as written (NaN does not: SQLite stores
    it as NULL); else the caller reads the row back instead of building it."""
    return all(not isinstance(v, float) or math.isfinite(v) for v in values)


def _order(row: Any) -> OrderRecord:
    return OrderRecord(
        id=row.id,
        client_order_id=row.client_order_id,
        account=row.account,
        symbol=row.symbol,
        side=row.side,
        type=row.type,
        time_in_force=row.time_in_force,
        quantity=float(row.quantity),
        status=row.status,
        created_at=_stamp(row.created_at),
        updated_at=_stamp(row.updated_at),
        filled_quantity=float(row.filled_quantity),
        avg_fill_price=None if row.avg_fill_price is None else float(row.avg_fill_price),
        limit_price=None if row.limit_price is None else float(row.limit_price),
        stop_price=None if row.stop_price is None else float(row.stop_price),
        take_profit=None if row.take_profit is None else float(row.take_profit),
        stop_loss=None if row.stop_loss is None else float(row.stop_loss),
        parent_id=row.parent_id,
        oco_group=row.oco_group,
        reject_code=row.reject_code,
        reject_reason=row.reject_reason,
        model=row.model,
        model_version=row.model_version,
        confidence=None if row.confidence is None else float(row.confidence),
        decided_at=_optional_stamp(row.decided_at),
    )


def _fill(row: Any) -> FillRecord:
    return FillRecord(
        id=int(row.id),
        order_id=row.order_id,
        account=row.account,
        symbol=row.symbol,
        side=row.side,
        quantity=float(row.quantity),
        price=float(row.price),
        fee=float(row.fee),
        ts=_stamp(row.ts),
        broker_fill_id=row.broker_fill_id,
        recorded_at=_stamp(row.recorded_at),
        fx_rate=float(row.fx_rate),
    )


def _position(row: Any) -> Position:
    return Position(
        account=row.account,
        symbol=row.symbol,
        quantity=float(row.quantity),
        avg_cost=float(row.avg_cost),
        realised_pnl=float(row.realised_pnl),
        updated_at=_stamp(row.updated_at),
        avg_cost_base=float(row.avg_cost_base),
        realised_pnl_base=float(row.realised_pnl_base),
    )


def _account(row: Any) -> Account:
    return Account(
        name=row.name,
        base_currency=row.base_currency,
        initial_cash=float(row.initial_cash),
        cash=float(row.cash),
        created_at=_stamp(row.created_at),
    )


# -- accounts -------------------------------------------------------------------------------------


def list_accounts(conn: Connection) -> list[Account]:
    """Every account, by name."""
    return [_account(r) for r in conn.execute(select(_ACCOUNTS).order_by(_ACCOUNTS.c.name)).all()]


def get_account(conn: Connection, name: str, *, for_update: bool = False) -> Account | None:
    """The account named ``name``, or None."""
    query = _GET_ACCOUNT_FOR_UPDATE if for_update else _GET_ACCOUNT
    row = _one(conn, query, {"_name": name})
    return None if row is None else _account(row)


def open_account(
    conn: Connection, name: str, *, initial_cash: float, base_currency: str = "USD", actor: str
) -> Account:
    """Open account ``name`` with ``initial_cash`` (its cash too), or return it if it is open
    already with the same initial cash and currency (audited as ``account.open`` once).

    Raises:
        ValueError: a bad name (1-64 characters), a negative or non-finite ``initial_cash``, or an
            existing account with another initial cash or currency.
    """
    _text("account", name, 64)
    _text("base_currency", base_currency, 8)
    cash = _finite("initial_cash", initial_cash)
    if cash < 0:
        raise ValueError(f"initial_cash must be >= 0, got {initial_cash!r}")
    existing = get_account(conn, name)
    if existing is not None:
        if existing.initial_cash != cash or existing.base_currency != base_currency:
            raise ValueError(
                f"account {name!r} is open already with initial cash {existing.initial_cash:g} "
                f"{existing.base_currency}, not {cash:g} {base_currency}; use another account name"
            )
        return existing
    conn.execute(
        insert(AccountRow).values(
            name=name, base_currency=base_currency, initial_cash=cash, cash=cash, created_at=now_ms()
        )
    )
    audit(
        conn,
        actor=actor,
        action="account.open",
        subject=f"account:{name}",
        details={"initial_cash": cash, "base_currency": base_currency},
    )
    account = get_account(conn, name)
    if account is None:  # pragma: no cover - just inserted
        raise RuntimeError(f"account {name!r} vanished after its insert")
    return account


# -- orders ---------------------------------------------------------------------------------------


def insert_order(
    conn: Connection,
    order: OrderRecord,
    *,
    actor: str,
    audit_rows: AuditRows | None = None,
    via: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> OrderRecord:
    """Insert ``order`` (audited as ``order.created`` with its status and its columns that are
    not null) and return it as stored.
    ``audit_rows``: a list to add the audit row to, for the caller to write before its commit
    (see :data:`AuditRows`); by default it is written at once.

    ``via``: the order was created in status ``via`` and moved to ``order.status`` in this same
    transaction (the caller checked the transition, e.g. ``new -> submitted``): the row is written
    once, in its final status, and the audit log has both steps, ``order.created`` (to ``via``)
    then ``order.transition`` (``from`` ``via``, ``to`` the status, the refusal's code and reason
    if any, plus ``details``), as :func:`transition_order` would have written them. One statement
    fewer than an insert and a compare-and-set; the same history.

    Raises:
        ValueError: a bad field (enum value, non-positive quantity or price, over-long text).
        sqlalchemy.exc.IntegrityError: the id, or the client order id in this account, exists
            already, or the account does not.
    """
    stored = _insert_order(conn, order, actor=actor, audit_rows=audit_rows, via=via, details=details,
                           if_absent=False)  # fmt: skip
    assert stored is not None  # only an insert if absent writes nothing
    return stored


def insert_order_if_absent(
    conn: Connection,
    order: OrderRecord,
    *,
    actor: str,
    audit_rows: AuditRows | None = None,
    via: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> OrderRecord | None:
    """:func:`insert_order`, or None with nothing written (no row, no audit row) when an order
    with the same id, or the same ``client_order_id`` in the account, is stored already: the
    idempotency check and the insert in one statement (``INSERT .. ON CONFLICT DO NOTHING``)
    where the dialect has it, so that a submit needs no read first.

    Raises:
        ValueError: a bad field. sqlalchemy.exc.IntegrityError: the account does not exist.
    """
    return _insert_order(conn, order, actor=actor, audit_rows=audit_rows, via=via, details=details,
                         if_absent=True)  # fmt: skip


def _insert_if_absent(conn: Connection, order: OrderRecord, values: Mapping[str, Any]) -> bool:
    """Insert the order row ``values`` unless its id or client order id is stored; True if it was."""
    stmt = _INSERT_ORDER_IF_ABSENT.get(conn.dialect.name)
    if stmt is not None:
        return _write(conn, stmt, values) == 1
    if get_order(conn, order.id) is not None or find_order(conn, order.account, order.client_order_id):
        return False
    _write(conn, _INSERT_ORDER, values)
    return True


_NOT_IN_CREATED = frozenset({"id", "account", "client_order_id", "status"})
_SET_BY_VIA = frozenset({"reject_code", "reject_reason"})
"""Columns an order created in one status and moved to another at once (``via``) gets with the
move: its ``order.transition`` row has them, not its ``order.created`` row."""
_LEFT_OUT_OF_CREATED = {False: _NOT_IN_CREATED, True: _NOT_IN_CREATED | _SET_BY_VIA}
"""The columns an ``order.created`` row leaves out, by whether the order was created ``via``
another status."""


def _insert_order(
    conn: Connection,
    order: OrderRecord,
    *,
    actor: str,
    audit_rows: AuditRows | None,
    via: str | None,
    details: Mapping[str, Any] | None,
    if_absent: bool,
) -> OrderRecord | None:
    """The insert of :func:`insert_order` and :func:`insert_order_if_absent`."""
    values = _order_values(order, via)
    if not if_absent:
        _write(conn, _INSERT_ORDER, values)
    elif not _insert_if_absent(conn, order, values):
        return None
    _emit(conn, _created_rows(actor, order, values, via, details), audit_rows)
    return _as_stored(conn, order, values)


def insert_orders_if_absent(
    conn: Connection,
    orders: Sequence[OrderRecord],
    *,
    actor: str,
    audit_rows: AuditRows | None = None,
    via: str | None = None,
) -> list[OrderRecord] | None:
    """:func:`insert_order_if_absent` of each of ``orders`` (without ``details``): one
    ``executemany``, all or nothing. Returns the orders as stored, in their order; None when any
    of them is stored already (its id, or its ``client_order_id`` in the account: nothing
    written, for the caller to insert them one by one and learn which) or on a dialect without
    the driver's path and ``INSERT .. ON CONFLICT DO NOTHING``.

    Raises:
        ValueError: a bad field (nothing written).
    """
    stmt = _INSERT_ORDER_IF_ABSENT.get(conn.dialect.name)
    if stmt is None:
        return None
    rows = [_order_values(order, via) for order in orders]
    if not _driver.write_all(conn, stmt, rows):
        return None
    audit: AuditRows = []
    for order, values in zip(orders, rows, strict=True):
        audit += _created_rows(actor, order, values, via, None)
    _emit(conn, audit, audit_rows)
    return [_as_stored(conn, order, values) for order, values in zip(orders, rows, strict=True)]


_KINDS = frozenset(itertools.product(SIDES, ORDER_TYPES, TIMES_IN_FORCE, ORDER_STATUSES))
"""Every valid ``(side, type, time_in_force, status)`` of an order row."""
_PRICE_NAMES = ("limit_price", "stop_price", "take_profit", "stop_loss")
_NO_PRICES = (None, None, None, None)


def _order_values(order: OrderRecord, via: str | None) -> dict[str, Any]:
    """The ``orders`` row of ``order``, its fields checked (``via``: see :func:`insert_order`).

    Raises:
        ValueError: a bad field (enum value, non-positive quantity or price, over-long text).
    """
    _text("order id", order.id, 64)
    _text("client_order_id", order.client_order_id, 64)
    _text("symbol", order.symbol, 32)
    if (order.side, order.type, order.time_in_force, order.status) not in _KINDS:  # one lookup, not four
        _one_of("side", order.side, SIDES)
        _one_of("type", order.type, ORDER_TYPES)
        _one_of("time_in_force", order.time_in_force, TIMES_IN_FORCE)
        _one_of("status", order.status, ORDER_STATUSES)
    _positive("quantity", order.quantity)
    prices = (order.limit_price, order.stop_price, order.take_profit, order.stop_loss)
    if prices != _NO_PRICES:  # a market order has none
        for name, value in zip(_PRICE_NAMES, prices, strict=True):
            if value is not None:
                _positive(name, value)
    if via is not None:
        _one_of("via", via, ORDER_STATUSES)
    if order.reject_code is not None:
        _text("reject_code", order.reject_code, 64)
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "quantity": float(order.quantity),
        "filled_quantity": float(order.filled_quantity),
        "avg_fill_price": order.avg_fill_price,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "take_profit": order.take_profit,
        "stop_loss": order.stop_loss,
        "parent_id": order.parent_id,
        "oco_group": order.oco_group,
        "status": order.status,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "model": order.model,
        "model_version": order.model_version,
        "confidence": order.confidence,
        "decided_at": _optional_ms(order.decided_at),
        "created_at": _ms(order.created_at, "created_at"),
        "updated_at": _ms(order.updated_at, "updated_at"),
    }


def _created_rows(
    actor: str,
    order: OrderRecord,
    values: Mapping[str, Any],
    via: str | None,
    details: Mapping[str, Any] | None,
) -> AuditRows:
    """The audit rows of ``order`` inserted as ``values``: ``order.created`` (its columns as
    created, the null ones left out) and, created ``via`` another status, its ``order.transition``."""
    details_created: dict[str, Any] = {
        "account": order.account,
        "client_order_id": order.client_order_id,
        "to": order.status if via is None else via,
    }
    left_out = _LEFT_OUT_OF_CREATED[via is not None]
    details_created.update({k: v for k, v in values.items() if v is not None and k not in left_out})
    subject = f"order:{order.id}"
    rows = [audit_row(actor=actor, action="order.created", subject=subject, details=details_created)]
    if via is not None:
        rows.append(_transition_row(actor, order, via, order.status, order.reject_code, order.reject_reason,
                                    details))  # fmt: skip
    return rows


def _as_stored(conn: Connection, order: OrderRecord, values: Mapping[str, Any]) -> OrderRecord:
    """``order`` just inserted as ``values``, as it reads back (read when it would not be itself)."""
    stored = _inserted(order, values)
    if stored is None:
        stored = get_order(conn, order.id)
    if stored is None:  # pragma: no cover - just inserted
        raise RuntimeError(f"order {order.id} vanished after its insert")
    return stored


_UTC = from_ms(0).tzinfo


def _reads_back(value: pd.Timestamp | None, ms: int | None) -> bool:
    """Whether the time ``value``, stored as ``ms``, reads back as itself (a UTC nanosecond
    timestamp on the millisecond; None as None)."""
    if value is None:
        return ms is None
    return (
        type(value) is pd.Timestamp
        and value.tzinfo is _UTC
        and value.unit == "ns"
        and ms is not None
        and value.value == ms * NS_PER_MS
    )


def stamp_now() -> pd.Timestamp:
    """The current time as the store keeps times: UTC, to the millisecond."""
    return _stamp(now_ms())


def _inserted(order: OrderRecord, values: Mapping[str, Any]) -> OrderRecord | None:
    """The order row just inserted with ``values``, as :func:`get_order` would read it (times to
    the millisecond, numbers as floats), or None when a value would not read back as written."""
    numbers = (
        values["quantity"], values["filled_quantity"], order.avg_fill_price, order.limit_price,
        order.stop_price, order.take_profit, order.stop_loss, order.confidence,
    )  # fmt: skip
    if (
        all(type(v) is float and math.isfinite(v) for v in numbers[:2])
        and all(v is None or (type(v) is float and math.isfinite(v)) for v in numbers[2:])
        and _reads_back(order.created_at, values["created_at"])
        and _reads_back(order.updated_at, values["updated_at"])
        and _reads_back(order.decided_at, values["decided_at"])
    ):
        return order  # what it reads back as already (immutable: the caller may keep it)
    floats = tuple(None if v is None else float(v) for v in numbers)
    if not _storable(*floats):
        return None
    quantity, filled, avg, limit, stop, take_profit, stop_loss, confidence = floats
    assert quantity is not None and filled is not None  # NOT NULL columns, checked above
    return OrderRecord(
        id=order.id,
        client_order_id=order.client_order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        quantity=quantity,
        status=order.status,
        created_at=_stamp(values["created_at"]),
        updated_at=_stamp(values["updated_at"]),
        filled_quantity=filled,
        avg_fill_price=avg,
        limit_price=limit,
        stop_price=stop,
        take_profit=take_profit,
        stop_loss=stop_loss,
        parent_id=order.parent_id,
        oco_group=order.oco_group,
        reject_code=order.reject_code,
        reject_reason=order.reject_reason,
        model=order.model,
        model_version=order.model_version,
        confidence=confidence,
        decided_at=_optional_stamp(values["decided_at"]),
    )


def get_order(conn: Connection, order_id: str, *, for_update: bool = False) -> OrderRecord | None:
    """The order ``order_id``, or None. ``for_update`` locks its row until the transaction ends
    (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite serialises writers anyway)."""
    query = _GET_ORDER_FOR_UPDATE if for_update else _GET_ORDER
    row = _one(conn, query, {"_id": order_id})
    return None if row is None else _order(row)


def find_order(
    conn: Connection, account: str, client_order_id: str, *, for_update: bool = False
) -> OrderRecord | None:
    """The order of ``account`` with ``client_order_id`` (the idempotency key), or None."""
    query = _FIND_ORDER_FOR_UPDATE if for_update else _FIND_ORDER
    row = _one(conn, query, {"_account": account, "_client_order_id": client_order_id})
    return None if row is None else _order(row)


_OPEN_SET = frozenset(OPEN_ORDER_STATUSES)
"""The open book's statuses as a set: a query for exactly these uses the partial index."""


def list_orders(
    conn: Connection,
    account: str,
    *,
    statuses: Iterable[str] | None = None,
    symbol: str | None = None,
    parent_id: str | None = None,
    oco_group: str | None = None,
) -> list[OrderRecord]:
    """The orders of ``account``, oldest first, filtered by any of the keywords given."""
    query = select(_ORDERS).where(_ORDERS.c.account == account)
    if statuses is not None:
        wanted = {str(s) for s in statuses}
        if wanted == _OPEN_SET:  # the open book: by the partial index, its own term
            query = query.where(text(OPEN_ORDERS_WHERE))
        else:
            query = query.where(_ORDERS.c.status.in_(sorted(wanted)))
    if symbol is not None:
        query = query.where(_ORDERS.c.symbol == symbol)
    if parent_id is not None:
        query = query.where(_ORDERS.c.parent_id == parent_id)
    if oco_group is not None:
        query = query.where(_ORDERS.c.oco_group == oco_group)
    return [_order(r) for r in conn.execute(query.order_by(_ORDERS.c.created_at, _ORDERS.c.id)).all()]


_D = TypeVar("_D")


def _built(cls: type[_D], **fields: Any) -> _D:
    """An instance of the frozen dataclass ``cls`` (one without ``__post_init__``) with every one
    of its ``fields``, typed and checked by the caller, set at once: its ``__init__`` sets them
    one by one, which the hot paths (a fill builds several) pay for every time."""
    built = object.__new__(cls)
    built.__dict__.update(fields)
    return built


def _with(order: OrderRecord, values: Mapping[str, Any]) -> OrderRecord:
    """``order`` with ``values`` (fields already checked and typed): a copy of its fields, not
    a new validation of each (a frozen dataclass's ``__init__`` sets them one by one)."""
    record = object.__new__(OrderRecord)
    record.__dict__.update(vars(order))
    record.__dict__.update(values)
    return record


def _compare_and_set(conn: Connection, order: OrderRecord, values: Mapping[str, Any]) -> OrderRecord:
    """Write ``values`` on ``order``'s row if its status and filled quantity are still those of
    ``order`` (else :class:`StaleOrder`), and return the row as it now is: ``order`` with
    ``values`` and the new ``updated_at`` (the match guarantees what the row was, and only this
    module's compare-and-set writes an order row), read back only when a value would not read
    back as written."""
    at = now_ms()
    changed = _write(
        conn,
        _COMPARE_AND_SET,
        {
            **values,
            "updated_at": at,
            "_id": order.id,
            "_status": order.status,
            "_filled_quantity": order.filled_quantity,
        },
    )
    if changed != 1:
        raise StaleOrder(
            f"order {order.id} changed since it was read as {order.status} with "
            f"{order.filled_quantity:g} filled; read it again"
        )
    if _storable(*values.values()):
        return _with(order, {**values, "updated_at": _stamp(at)})
    stored = get_order(conn, order.id)
    if stored is None:  # pragma: no cover - just updated
        raise RuntimeError(f"order {order.id} vanished after its update")
    return stored


def transition_order(
    conn: Connection,
    order: OrderRecord,
    status: str,
    *,
    actor: str,
    reject_code: str | None = None,
    reject_reason: str | None = None,
    details: Mapping[str, Any] | None = None,
    audit_rows: AuditRows | None = None,
) -> OrderRecord:
    """Move ``order`` (as the caller read it in this transaction) to ``status``, with the reason
    code and text of a refusal if given, and audit it as ``order.transition`` (``from``, ``to``,
    plus ``details``). The caller has checked the transition's legality
    (:func:`execution.orders.check_transition`). ``audit_rows`` as :func:`insert_order`.

    Raises:
        ValueError: an unknown status, an over-long reject code.
        StaleOrder: the stored row is no longer what ``order`` says; nothing was written.
    """
    _one_of("status", status, ORDER_STATUSES)
    values: dict[str, Any] = {"status": status}
    if reject_code is not None:
        values["reject_code"] = _text("reject_code", reject_code, 64)
    if reject_reason is not None:
        values["reject_reason"] = str(reject_reason)
    stored = _compare_and_set(conn, order, values)
    row = _transition_row(actor, order, order.status, status, reject_code, reject_reason, details)
    _emit(conn, [row], audit_rows)
    return stored


def transition_orders(
    conn: Connection,
    orders: Sequence[OrderRecord],
    status: str,
    *,
    actor: str,
    audit_rows: AuditRows | None = None,
) -> list[OrderRecord] | None:
    """:func:`transition_order` of each of ``orders`` (distinct orders, as the caller read them
    in this transaction; transitions checked by the caller) to ``status``, without a refusal's
    reason or details: one ``executemany`` of the compare-and-sets, all or nothing. Returns the
    orders as they now are, in their order; None when any row is no longer what its order says
    (nothing written: the caller moves them one by one, each deciding on its stored row) or on a
    dialect without the driver's path.

    Raises:
        ValueError: an unknown status.
    """
    _one_of("status", status, ORDER_STATUSES)
    at = now_ms()
    rows = [
        {"status": status, "updated_at": at, "_id": o.id, "_status": o.status,
         "_filled_quantity": o.filled_quantity}
        for o in orders
    ]  # fmt: skip
    if not _driver.write_all(conn, _COMPARE_AND_SET, rows):
        return None
    changed = {"status": status, "updated_at": _stamp(at)}
    audit = [_transition_row(actor, o, o.status, status, None, None, None) for o in orders]
    _emit(conn, audit, audit_rows)
    return [_with(o, changed) for o in orders]


def _transition_row(
    actor: str,
    order: OrderRecord,
    start: str,
    end: str,
    reject_code: str | None,
    reject_reason: str | None,
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The ``order.transition`` audit row of ``order`` moving from ``start`` to ``end``."""
    found: dict[str, Any] = {"account": order.account, "from": start, "to": end}
    if reject_code:
        found["reject_code"] = reject_code
        found["reject_reason"] = reject_reason
    if details:
        found.update(details)
    return audit_row(actor=actor, action="order.transition", subject=f"order:{order.id}", details=found)


# -- fills, positions, cash -----------------------------------------------------------------------


def position_after(
    quantity: float, avg_cost: float, realised_pnl: float, signed_quantity: float, price: float
) -> tuple[float, float, float]:
    """``(quantity, avg_cost, realised_pnl)`` of a position after a fill of ``signed_quantity``
    (``+`` buy, ``-`` sell) at ``price``, by average cost (see the module docstring). A quantity
    within :data:`QUANTITY_TOLERANCE` of zero becomes 0, with ``avg_cost`` 0."""
    new_quantity = quantity + signed_quantity
    scale = max(abs(quantity), abs(signed_quantity))
    if quantity == 0 or (quantity > 0) == (signed_quantity > 0):  # open or add
        if _is_zero(new_quantity, scale):
            return 0.0, 0.0, realised_pnl
        cost = (abs(quantity) * avg_cost + abs(signed_quantity) * price) / abs(new_quantity)
        return new_quantity, cost, realised_pnl
    closed = min(abs(signed_quantity), abs(quantity))
    realised = realised_pnl + closed * (price - avg_cost) * (1.0 if quantity > 0 else -1.0)
    if _is_zero(new_quantity, scale):
        return 0.0, 0.0, realised
    if (new_quantity > 0) == (quantity > 0):  # reduced
        return new_quantity, avg_cost, realised
    return new_quantity, price, realised  # flipped: the rest opens at the fill's price


def find_fill(conn: Connection, account: str, broker_fill_id: str) -> FillRecord | None:
    """The fill of ``account`` recorded under ``broker_fill_id``, or None (a broker's fill ids
    are unique per account: two accounts may each have a fill of the same id)."""
    row = _one(conn, _FIND_FILL, {"_account": account, "_broker_fill_id": broker_fill_id})
    return None if row is None else _fill(row)


def list_fills(
    conn: Connection, account: str, *, order_id: str | None = None, symbol: str | None = None
) -> list[FillRecord]:
    """The fills of ``account`` in the order they were recorded, optionally of one order or symbol."""
    query = select(_FILLS).where(_FILLS.c.account == account)
    if order_id is not None:
        query = query.where(_FILLS.c.order_id == order_id)
    if symbol is not None:
        query = query.where(_FILLS.c.symbol == symbol)
    return [_fill(r) for r in conn.execute(query.order_by(_FILLS.c.id)).all()]


def get_position(conn: Connection, account: str, symbol: str, *, for_update: bool = False) -> Position | None:
    """The position of ``account`` in ``symbol``, or None if it never traded it."""
    query = _GET_POSITION_FOR_UPDATE if for_update else _GET_POSITION
    row = _one(conn, query, {"_account": account, "_symbol": symbol})
    return None if row is None else _position(row)


def list_positions(conn: Connection, account: str, *, include_flat: bool = True) -> list[Position]:
    """The positions of ``account`` by symbol; flat ones (which keep their realised P&L) unless
    ``include_flat`` is False."""
    query = _ALL_POSITIONS if include_flat else _OPEN_POSITIONS
    return [_position(r) for r in _driver.all_rows(conn, query, {"_account": account})]


def fill_completes(order: OrderRecord, quantity: float) -> bool:
    """True when a fill of ``quantity`` leaves nothing of ``order`` to fill (within
    :data:`QUANTITY_TOLERANCE`)."""
    return _is_zero(order.quantity - (order.filled_quantity + quantity), order.quantity)


def replayed_fill(
    conn: Connection,
    order: OrderRecord,
    broker_fill_id: str,
    *,
    quantity: float,
    price: float,
    fee: float,
    ts: pd.Timestamp,
) -> FillResult:
    """What the fill of ``order``'s account recorded under ``broker_fill_id`` did, when
    :func:`claim_fill` found that id taken (``duplicate=True``: a replay, to be ignored).

    Raises:
        FillConflict: ``broker_fill_id`` was recorded with other values (or for another order).
    """
    existing = find_fill(conn, order.account, broker_fill_id)
    if existing is None:  # pragma: no cover - the insert found it
        raise RuntimeError(f"broker fill {broker_fill_id!r} conflicted but is not recorded")
    same = (
        existing.order_id == order.id
        and existing.quantity == float(quantity)
        and existing.price == float(price)
        and existing.fee == float(fee)
        and _ms(existing.ts) == _ms(ts, "fill ts")
    )
    if not same:
        raise FillConflict(
            f"broker fill {broker_fill_id!r} is recorded already as {existing.quantity:g} @ "
            f"{existing.price:g} (fee {existing.fee:g}, {existing.ts}) on order {existing.order_id}; "
            f"it came again as {quantity:g} @ {price:g} (fee {fee:g}, {ts}) on order {order.id}"
        )
    position = get_position(conn, existing.account, existing.symbol)
    book = get_account(conn, existing.account)
    stored = get_order(conn, existing.order_id)
    if position is None or book is None or stored is None:  # pragma: no cover - foreign keys
        raise RuntimeError(f"fill {broker_fill_id!r} is recorded but its order or book is missing")
    return FillResult(existing, stored, position, book.cash, duplicate=True)


@dataclass(frozen=True)
class ClaimedFill:
    """A fill row inserted by :func:`claim_fill` in the caller's transaction: its ``id`` and the
    ``recorded_at`` it was stamped with (epoch milliseconds)."""

    id: int
    recorded_at: int


def claim_fill(
    conn: Connection,
    order: OrderRecord,
    *,
    broker_fill_id: str,
    quantity: float,
    price: float,
    fee: float,
    ts: pd.Timestamp,
    fx_rate: float = 1.0,
) -> ClaimedFill | None:
    """Insert the ``fills`` row of one execution of ``order`` unless ``broker_fill_id`` is
    recorded already (None then, nothing written: a replay, for :func:`replayed_fill` to judge).
    The idempotency check and the insert are one statement (``INSERT .. ON CONFLICT DO NOTHING
    RETURNING id``) where the dialect has it. The caller books it with :func:`record_fill`
    (``claimed=``) in the same transaction, or lets the transaction roll back.

    Raises:
        ValueError: a bad ``broker_fill_id``, a non-positive quantity, price or ``fx_rate``, a
            non-finite fee.
    """
    at = now_ms()
    qty, px, fee_, rate = _fill_numbers(broker_fill_id, quantity, price, fee, fx_rate)
    values = _fill_row(order, _Execution(broker_fill_id, qty, px, fee_, _ms(ts, "fill ts"), rate), at)
    stmt = _INSERT_FILL_IF_ABSENT_RETURNING.get(conn.dialect.name)
    if stmt is None:
        if find_fill(conn, order.account, broker_fill_id) is not None:
            return None
        stmt = _INSERT_FILL_RETURNING
    inserted = _driver.first_value(conn, stmt, values)  # the id
    if inserted is None:
        return None
    return ClaimedFill(int(inserted), at)


_Figures = tuple[float, float, float, float, float]
"""A position's quantity, average cost, realised P&L, average cost and realised P&L in base."""


class _Execution(NamedTuple):
    """One fill's values as the broker reported them, checked, by their ``fills`` columns (``ts``
    in epoch milliseconds)."""

    broker_fill_id: str
    quantity: float
    price: float
    fee: float
    ts: int
    fx_rate: float


def _fill_row(order: OrderRecord, fill: _Execution, at: int) -> dict[str, Any]:
    """The ``fills`` row of ``fill`` of ``order``, recorded at ``at``."""
    return {
        "order_id": order.id,
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side,
        **fill._asdict(),
        "recorded_at": at,
    }


class BookedFill(NamedTuple):
    """One fill as :func:`record_fills` booked it: the order, the position and the account's cash
    after it, and the fill's row id."""

    order: OrderRecord
    fill_id: int
    position: Position
    cash: float


FillValues = tuple[str, float, float, float, pd.Timestamp]
"""A fill as :func:`record_fills` takes it: ``(broker_fill_id, quantity, price, fee, ts)``."""

_LAST_FILL_ID = select(func.max(_FILLS.c.id))
# the fills after an id, by the primary key alone (with the account in the condition SQLite would
# scan the account's part of its unique index instead: every fill the account ever had)
_FILLS_AFTER = select(_FILLS.c.account, _FILLS.c.broker_fill_id, _FILLS.c.id).where(
    _FILLS.c.id > bindparam("_after")
)
_FLAT: _Figures = (0.0, 0.0, 0.0, 0.0, 0.0)


def record_fills(
    conn: Connection,
    orders: Sequence[OrderRecord],
    fills: Sequence[FillValues],
    positions: Sequence[Position | None],
    *,
    actor: str,
    cash_before: float,
    audit_rows: AuditRows | None = None,
) -> list[BookedFill] | None:
    """:func:`record_fill` of each of ``fills`` on the order of the same place in ``orders`` (as
    the caller read them in this transaction: open, not late, of one account, each of another
    symbol, in the account's currency), each with ``status`` as the fill leaves it (``filled`` or
    ``partially_filled``), the position of the same place in ``positions`` as the caller knows it
    (with its base figures; None: never traded) and ``cash_before`` as :func:`record_fill`'s (the
    caller writes the account's cash; each result's cash is the cash after its fill): the same
    rows, and the fills' inserts, the orders' and the positions' compare-and-sets each one
    ``executemany``, all or nothing. Returns the results in order; None when a fill is recorded
    already, an order's or a position's row is no longer what the caller says, or the dialect
    lacks the driver's path (nothing written: the caller books them one by one, which judges each).

    Raises:
        ValueError: a bad fill or one beyond its order's remaining quantity (nothing written).
    """
    name = conn.dialect.name
    insert_fill, insert_position = _INSERT_FILL_IF_ABSENT.get(name), _INSERT_POSITION_IF_ABSENT.get(name)
    if name not in _driver.DIALECTS or insert_fill is None or insert_position is None or not orders:
        return None
    account = orders[0].account
    at = now_ms()
    fill_rows: list[dict[str, Any]] = []
    order_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    booked = []
    for order, (key, quantity, price, fee, ts), known in zip(orders, fills, positions, strict=True):
        if order.account != account or order.status in LATE_FILL_STATUSES:
            return None
        qty, px, fee_, _ = _fill_numbers(key, quantity, price, fee, 1.0)
        fill = _Execution(key, qty, px, fee_, _ms(ts, "fill ts"), 1.0)
        status, filled, avg = _order_after_fill(order, qty, px)
        if not math.isfinite(avg):
            return None
        fill_rows.append(_fill_row(order, fill, at))
        order_rows.append({"status": status, "filled_quantity": filled, "avg_fill_price": avg,
                           "updated_at": at, "_id": order.id, "_status": order.status,
                           "_filled_quantity": order.filled_quantity})  # fmt: skip
        signed = qty if order.side == "buy" else -qty
        write = _position_write(order, known, signed, px, 1.0, at)
        if write is None:
            return None
        (inserts if known is None else updates).append(write[0])
        values = write[1]
        booked.append((order, fill, status, filled, avg, -signed * px - fee_, _figures(values)))
    with _driver.Savepoint(conn) as savepoint:
        after = _driver.first_value(conn, _LAST_FILL_ID, {}) or 0
        ids: dict[str, int] = {}
        if _driver.write_many(conn, insert_fill, fill_rows) == len(fill_rows):
            ids = {
                key: i
                for who, key, i in _driver.rows(conn, _FILLS_AFTER, {"_after": after})
                if who == account
            }
        if (
            len(ids) != len(fill_rows)
            or _driver.write_many(conn, _COMPARE_AND_SET, order_rows) != len(order_rows)
            or _driver.write_many(conn, _UPDATE_KNOWN_POSITION, updates) != len(updates)
            or _driver.write_many(conn, insert_position, inserts) != len(inserts)
        ):
            savepoint.undo()
            return None
    stamp = _stamp(at)
    cash = cash_before
    audit: AuditRows = []
    results = []
    for order, fill, status, filled, avg, flow, figures in booked:
        cash += flow
        fill_id = int(ids[fill.broker_fill_id])
        audit += _fill_rows(actor, order, status, False, fill_id, fill, flow, figures)
        stored = _with(order, {"status": status, "filled_quantity": filled, "avg_fill_price": avg,
                               "updated_at": stamp})  # fmt: skip
        results.append(BookedFill(stored, fill_id, _position_after(order, figures, stamp), cash))
    _emit(conn, audit, audit_rows)
    return results


class _Unknown:
    """The position before a fill is not known to the caller: read it (see :func:`record_fill`)."""


UNKNOWN_POSITION = _Unknown()


def record_fill(
    conn: Connection,
    order: OrderRecord,
    *,
    broker_fill_id: str,
    quantity: float,
    price: float,
    fee: float,
    ts: pd.Timestamp,
    status: str,
    actor: str,
    fx_rate: float = 1.0,
    audit_rows: AuditRows | None = None,
    claimed: ClaimedFill | None = None,
    position: Position | _Unknown | None = UNKNOWN_POSITION,
    cash_before: float | None = None,
) -> FillResult:
    """Record one execution of ``order`` (as read in this transaction) once: the order's filled
    quantity, average fill price and ``status``, the fill row, the position, the account's cash
    and the audit rows (``order.transition`` and ``order.fill``), in the caller's transaction.

    Idempotent by ``broker_fill_id``: a fill recorded before with the same values is returned
    with ``duplicate=True`` and nothing is written (see :func:`replayed_fill`). ``status`` is the
    caller's checked next state: ``filled`` when the fill completes the order
    (:func:`fill_completes`), else ``partially_filled``; or, for a *late fill* (the venue filled
    an order whose cancel or expiry was already recorded: the two crossed), the order's own
    ``cancelled``/``expired``, which it keeps (no ``order.transition`` row; ``order.fill`` says
    ``late``).

    ``claimed``: the fill row was inserted already in this transaction by :func:`claim_fill`
    with these values (the replay check done); else the fill's insert is the replay check (one
    statement: :func:`claim_fill`). ``position``:
    the position of ``order``'s symbol before the fill as the caller knows it (None: never
    traded); it is written compare-and-set (only if the row still holds it, else read and
    recomputed), so no read is needed when the caller is right. ``audit_rows`` as
    :func:`insert_order`. ``fx_rate``: account currency per unit of the asset's quote currency at
    the fill (see the module documentation), stored on the fill; a replay is recognised by the
    broker's values alone and keeps the rate it was booked at. ``cash_before``: the account's cash
    before the fill as the caller keeps it, when the caller writes the account's cash itself
    (:func:`set_cash`, e.g. once for a batch of fills): the result's cash is then ``cash_before``
    plus the fill's cash flow and the account row is left alone; None: the fill moves the
    account's cash in the database (one statement) and the result says what it holds after.

    Raises:
        FillConflict: ``broker_fill_id`` was recorded with other values.
        ValueError: a non-positive quantity, price or ``fx_rate``, a non-finite fee, a fill beyond
            the order's remaining quantity, or a ``status`` that does not match the fill.
        StaleOrder: the order's row changed since ``order`` was read; the caller rolls back.
    """
    qty, px, fee_, rate = _fill_numbers(broker_fill_id, quantity, price, fee, fx_rate)
    ts_ms = _ms(ts, "fill ts")
    if claimed is None:
        claimed = claim_fill(conn, order, broker_fill_id=broker_fill_id, quantity=qty, price=px, fee=fee_,
                             ts=ts, fx_rate=rate)  # fmt: skip
        if claimed is None:
            return replayed_fill(conn, order, broker_fill_id, quantity=qty, price=px, fee=fee_, ts=ts)

    expected, filled, avg = _order_after_fill(order, qty, px)
    late = order.status in LATE_FILL_STATUSES
    if status != expected:
        raise ValueError(
            f"a fill of {qty:g} on order {order.id} ({order.status}) leaves it {expected}, not {status}"
        )

    # 1. the fill (claimed above), 2. the order (compare-and-set), 3. the position, 4. cash, 5. audit.
    stored = _compare_and_set(
        conn, order, {"status": status, "filled_quantity": filled, "avg_fill_price": avg}
    )
    at, fill_id = claimed.recorded_at, claimed.id
    signed = qty if order.side == "buy" else -qty
    q1, c1, r1, b1, rb1 = _book_position(conn, order, signed, px, rate, at, position)

    cash_flow = (-signed * px - fee_) * rate
    if cash_before is not None:
        cash: float | None = cash_before + cash_flow
    else:
        cash = _move_cash(conn, order.account, cash_flow)
    if cash is None:  # pragma: no cover - the order's foreign key
        raise RuntimeError(f"account {order.account!r} of order {order.id} does not exist")

    fill = _Execution(broker_fill_id, qty, px, fee_, ts_ms, rate)
    figures = (q1, c1, r1, b1, rb1)
    _emit(conn, _fill_rows(actor, order, status, late, fill_id, fill, cash_flow, figures), audit_rows)
    return _fill_result(order, stored, fill_id, fill, at, figures, cash)


def _fill_numbers(
    broker_fill_id: str, quantity: float, price: float, fee: float, fx_rate: float
) -> tuple[float, float, float, float]:
    """A fill's quantity, price, fee and FX rate, checked.

    Raises:
        ValueError: a bad ``broker_fill_id``, a non-positive quantity, price or rate, a non-finite fee.
    """
    if (  # plain floats in range (NaN is not): what the checks below pass as they are
        type(quantity) is float
        and type(price) is float
        and type(fee) is float
        and type(fx_rate) is float
        and 0.0 < quantity < math.inf
        and 0.0 < price < math.inf
        and -math.inf < fee < math.inf
        and 0.0 < fx_rate < math.inf
        and type(broker_fill_id) is str
        and 0 < len(broker_fill_id) <= 128
        and not broker_fill_id.isspace()
    ):
        return quantity, price, fee, fx_rate
    _text("broker_fill_id", broker_fill_id, 128)
    return (
        _positive("quantity", quantity),
        _positive("price", price),
        _finite("fee", fee),
        _positive("fx_rate", fx_rate),
    )


def _order_after_fill(order: OrderRecord, qty: float, px: float) -> tuple[str, float, float]:
    """``order``'s status (its own for a late fill), filled quantity and average fill price after a
    fill of ``qty`` at ``px``.

    Raises:
        ValueError: the fill exceeds the order's remaining quantity.
    """
    filled = order.filled_quantity + qty
    if filled > order.quantity and not _is_zero(filled - order.quantity, order.quantity):
        raise ValueError(
            f"a fill of {qty:g} on order {order.id} exceeds its remaining {order.remaining:g} "
            f"(quantity {order.quantity:g}, filled {order.filled_quantity:g})"
        )
    complete = fill_completes(order, qty)
    late = order.status in LATE_FILL_STATUSES
    status = order.status if late else "filled" if complete else "partially_filled"
    avg = ((order.avg_fill_price or 0.0) * order.filled_quantity + px * qty) / filled
    return status, order.quantity if complete else filled, avg


def _fill_rows(
    actor: str,
    order: OrderRecord,
    status: str,
    late: bool,
    fill_id: int,
    fill: _Execution,
    cash_flow: float,
    position: _Figures,
) -> AuditRows:
    """A fill's audit rows: its ``order.transition`` (none for a late fill) and ``order.fill``."""
    subject = f"order:{order.id}"
    rows: AuditRows = []
    if not late:
        rows.append(
            audit_row(
                actor=actor,
                action="order.transition",
                subject=subject,
                details={
                    "account": order.account,
                    "from": order.status,
                    "to": status,
                    "broker_fill_id": fill.broker_fill_id,
                },
            )
        )
    q1, c1, r1, b1, rb1 = position
    row = audit_row(
        actor=actor,
        action="order.fill",
        subject=subject,
        details={
            "account": order.account,
            "fill_id": fill_id,
            "symbol": order.symbol,
            "side": order.side,
            **fill._asdict(),
            "cash_flow": cash_flow,
            "position": q1,
            "avg_cost": c1,
            "realised_pnl": r1,
            "avg_cost_base": b1,
            "realised_pnl_base": rb1,
            "late": late,
        },
    )
    rows.append(row)
    return rows


def _fill_result(
    order: OrderRecord,
    stored: OrderRecord,
    fill_id: int,
    fill: _Execution,
    at: int,
    position: _Figures,
    cash: float,
) -> FillResult:
    """The :class:`FillResult` of a new fill of ``order`` (``stored``: the order after it)."""
    recorded = _stamp(at)  # immutable: the fill and the position share it
    record = _built(
        FillRecord,
        id=fill_id,
        order_id=order.id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        ts=_stamp(fill.ts),
        broker_fill_id=fill.broker_fill_id,
        recorded_at=recorded,
        fx_rate=fill.fx_rate,
    )
    return _built(
        FillResult, fill=record, order=stored, position=_position_after(order, position, recorded), cash=cash,
        duplicate=False,
    )  # fmt: skip


def _position_after(order: OrderRecord, figures: _Figures, updated_at: pd.Timestamp) -> Position:
    """``order``'s position as a fill left it with ``figures``."""
    q1, c1, r1, b1, rb1 = figures
    return _built(
        Position, account=order.account, symbol=order.symbol, quantity=q1, avg_cost=c1, realised_pnl=r1,
        updated_at=updated_at, avg_cost_base=b1, realised_pnl_base=rb1,
    )  # fmt: skip


def _book_position(
    conn: Connection,
    order: OrderRecord,
    signed: float,
    price: float,
    rate: float,
    at: int,
    known: Position | _Unknown | None,
) -> tuple[float, float, float, float, float]:
    """Move ``order``'s position by a fill of ``signed`` units at ``price`` (quote currency) and
    ``rate``; ``(quantity, avg_cost, realised_pnl, avg_cost_base, realised_pnl_base)`` after it.

    From ``known`` (the caller's view) when the row still holds it (a compare-and-set update, or
    an insert if absent when ``known`` is None); else from the row, read and locked."""
    key = {"_account": order.account, "_symbol": order.symbol}
    write = None if isinstance(known, _Unknown) else _position_write(order, known, signed, price, rate, at)
    if write is not None:
        stmt = (
            _UPDATE_KNOWN_POSITION if known is not None else _INSERT_POSITION_IF_ABSENT.get(conn.dialect.name)
        )
        if stmt is not None and _write(conn, stmt, write[0]) == 1:
            return _figures(write[1])
    found = get_position(conn, order.account, order.symbol, for_update=True)
    before = (
        (0.0, 0.0, 0.0, 0.0, 0.0)
        if found is None
        else (found.quantity, found.avg_cost, found.realised_pnl, found.avg_cost_base or 0.0,
              found.realised_pnl_base or 0.0)
    )  # fmt: skip
    values = _position_values(before, signed, price, rate, at)
    if found is None:
        _write(conn, _INSERT_POSITION, {"account": order.account, "symbol": order.symbol, **values})
    else:
        _write(conn, _UPDATE_POSITION, {**values, **key})
    return _figures(values)


def _position_write(
    order: OrderRecord, known: Position | None, signed: float, price: float, rate: float, at: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The write of ``order``'s position after a fill, from ``known`` (the caller's view; None:
    never traded): the parameters of its compare-and-set (:data:`_UPDATE_KNOWN_POSITION`), or for
    None the row of its insert if absent, and the new values; None when ``known`` lacks its base
    figures (the row must be read)."""
    if known is None:
        values = _position_values(_FLAT, signed, price, rate, at)
        return {"account": order.account, "symbol": order.symbol, **values}, values
    if known.avg_cost_base is None or known.realised_pnl_base is None:
        return None
    before = (
        known.quantity,
        known.avg_cost,
        known.realised_pnl,
        known.avg_cost_base,
        known.realised_pnl_base,
    )
    values = _position_values(before, signed, price, rate, at)
    params: dict[str, Any] = dict(zip(_POSITION_WAS, before, strict=True))
    params.update(values)
    params.update(_account=order.account, _symbol=order.symbol)
    return params, values


def _position_values(
    before: tuple[float, float, float, float, float], signed: float, price: float, rate: float, at: int
) -> dict[str, Any]:
    """The ``positions`` columns after a fill (see :func:`position_after`), in quote and base."""
    q0, c0, r0, b0, rb0 = before
    q1, c1, r1 = position_after(q0, c0, r0, signed, price)
    _, b1, rb1 = position_after(q0, b0, rb0, signed, price * rate)
    return {"quantity": q1, "avg_cost": c1, "realised_pnl": r1, "updated_at": at,
            "avg_cost_base": b1, "realised_pnl_base": rb1}  # fmt: skip


def _figures(values: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    return (values["quantity"], values["avg_cost"], values["realised_pnl"], values["avg_cost_base"],
            values["realised_pnl_base"])  # fmt: skip


def set_cash(conn: Connection, account: str, *, cash: float, was: float) -> float:
    """Write ``account``'s cash as ``cash``, computed by the caller from ``was`` (the cash it
    read or last wrote) and the cash flows of fills booked with ``cash_before``
    (:func:`record_fill`): one compare-and-set. If the row no longer holds ``was`` (another writer
    moved it meanwhile), the flows (``cash - was``) are added to what it holds instead. Returns
    the cash the row holds after.

    Raises:
        LookupError: the account does not exist.
    """
    params = {"cash": cash, "_name": account, "_was": was}
    if _write(conn, _SET_CASH, params) == 1:
        return cash
    moved = _move_cash(conn, account, cash - was)
    if moved is None:
        raise LookupError(f"account {account!r} does not exist")
    return moved


def _move_cash(conn: Connection, account: str, cash_flow: float) -> float | None:
    """Add ``cash_flow`` to ``account``'s cash; its cash after, or None when it does not exist.
    One statement (``UPDATE ... RETURNING``) where the dialect has it."""
    params = {"_name": account, "_cash_flow": cash_flow}
    if conn.dialect.update_returning:
        cash = _driver.first_value(conn, _MOVE_CASH_RETURNING, params)
        return None if cash is None else float(cash)
    conn.execute(_MOVE_CASH, params)
    found = get_account(conn, account)
    return None if found is None else found.cash


# -- equity history -------------------------------------------------------------------------------


def record_equity(
    conn: Connection, account: str, *, ts: pd.Timestamp, market_value: float, cash: float | None = None
) -> EquityPoint:
    """Mark ``account`` at ``ts``: its cash now plus ``market_value`` (of its positions at the
    mark's prices). A second mark at the same ``ts`` replaces the first. ``cash``: the account's
    cash as the caller keeps it (the OMS's books), else read.

    Raises:
        ValueError: an unknown account (when ``cash`` is not given) or a non-finite market value
            or cash.
    """
    value = _finite("market_value", market_value)
    ts_ms = _ms(ts, "ts")
    if cash is None:
        found = get_account(conn, account)
        if found is None:
            raise ValueError(f"account {account!r} does not exist; open it first")
        cash = found.cash
    cash = _finite("cash", cash)
    values = {"cash": cash, "market_value": value, "equity": cash + value}
    upsert = _UPSERT_EQUITY.get(conn.dialect.name)
    where = {"_account": account, "_ts": ts_ms}
    if upsert is not None:
        _write(conn, upsert, {"account": account, "ts": ts_ms, **values})
    elif conn.execute(_EQUITY_MARKED, where).first() is None:
        conn.execute(_INSERT_EQUITY, {"account": account, "ts": ts_ms, **values})
    else:
        conn.execute(_UPDATE_EQUITY, {**values, **where})
    return EquityPoint(account, _stamp(ts_ms), values["cash"], value, values["equity"])


def list_equity(conn: Connection, account: str, *, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The marks of ``account`` as a frame indexed by ``ts`` (UTC) with float columns ``cash``,
    ``market_value`` and ``equity``, oldest first (empty when none)."""
    query = select(_EQUITY.c.ts, _EQUITY.c.cash, _EQUITY.c.market_value, _EQUITY.c.equity).where(
        _EQUITY.c.account == account
    )
    if since is not None:
        query = query.where(_EQUITY.c.ts >= _ms(since, "since"))
    rows = conn.execute(query.order_by(_EQUITY.c.ts)).all()
    frame = pd.DataFrame(
        [tuple(r) for r in rows], columns=["ts", "cash", "market_value", "equity"], dtype=float
    )
    frame.index = pd.DatetimeIndex(
        pd.to_datetime(frame.pop("ts").astype("int64"), unit="ms", utc=True), name="ts"
    )
    return frame


# -- kill switch ----------------------------------------------------------------------------------


def get_trading_state(conn: Connection, account: str) -> TradingState:
    """The kill switch of ``account``: not halted when it was never set."""
    row = _one(conn, _GET_STATE, {"_account": account})
    if row is None:
        return TradingState(account, halted=False, reason=None, at=None)
    return TradingState(account, halted=bool(row.halted), reason=row.reason, at=_stamp(row.at))


def set_trading_state(
    conn: Connection, account: str, *, halted: bool, reason: str | None, actor: str
) -> TradingState:
    """Halt (``halted=True``) or resume trading of ``account``, saying why; audited as
    ``trading.halt`` or ``trading.resume``. Setting the state it has already is recorded too.

    Raises:
        ValueError: a bad account name, or halting without a reason.
    """
    _text("account", account, 64)
    if halted and (reason is None or not reason.strip()):
        raise ValueError("say why trading is halted (a reason is required)")
    at = now_ms()
    values = {"halted": int(bool(halted)), "reason": reason, "at": at}
    if conn.execute(select(_STATE.c.account).where(_STATE.c.account == account)).first() is None:
        conn.execute(insert(TradingStateRow).values(account=account, **values))
    else:
        conn.execute(update(TradingStateRow).where(TradingStateRow.account == account).values(**values))
    audit(
        conn,
        actor=actor,
        action="trading.halt" if halted else "trading.resume",
        subject=f"account:{account}",
        details={"reason": reason},
    )
    return TradingState(account, halted=bool(halted), reason=reason, at=_stamp(at))
