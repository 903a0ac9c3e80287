"""The OMS's accounting and state machine: hand-computed positions, the enum values storage keeps,
and a property test (hypothesis) that drives random submits, accepts, partial fills, replays,
cancels, expiries and rejections over four symbols at random prices and times, on a real SQLite
store; one symbol (SAP) is quoted in EUR in the USD account, booked at the EURUSD rate of each
fill's time (a stored series that moves every day).

After every step: each position equals the sum of its signed fills, cash equals the initial cash
minus the base-currency cost of the fills and their fees (each at the rate the test expects: the
last EURUSD bar closed by the fill's time), the average-cost books balance in base currency and,
per symbol, in its quote currency, the in-memory view equals the database, and an operation
raised IllegalTransition exactly when the state machine forbids it (a fill that reaches a
cancelled or expired order is booked without a transition). At the end, every order's status
history in ``audit_log`` is a legal path of :data:`execution.orders.TRANSITIONS` ending in its
stored status, and a restarted manager sees the same book."""

from __future__ import annotations

import dataclasses
import itertools
import math
import uuid
from collections import defaultdict
from collections.abc import Iterator

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from execution.oms import Order, OrderManager, new_order_id
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
)
from storage import list_audit, open_store
from storage.bars import upsert_bars
from storage.execution import (
    OrderRecord,
    get_account,
    list_fills,
    list_orders,
    list_positions,
    position_after,
)
from storage.schema import OPEN_ORDER_STATUSES, ORDER_STATUSES, ORDER_TYPES, SIDES, TIMES_IN_FORCE

SYMBOLS = ("SPY", "QQQ", "BTC-USD", "SAP")
CURRENCIES = {"SAP": "EUR"}
INITIAL_CASH = 1_000_000.0
TS = pd.Timestamp("2024-01-02", tz="UTC")
STEP = pd.Timedelta(hours=25)  # the n-th step's fill is at TS + n * STEP: a new rate at most steps
# EURUSD daily bars from 2023-12-20: a rate that moves every day (the bar of day d closes at d + 1)
EURUSD = pd.Series(
    [1.05 + 0.013 * (i % 9) for i in range(60)],
    index=pd.date_range("2023-12-20", periods=60, freq="D", tz="UTC", name="ts"),
)


def _rate(symbol: str, ts: pd.Timestamp) -> float:
    """What a fill of ``symbol`` at ``ts`` must be booked at: the close of the last EURUSD bar
    closed by ``ts`` (computed here from the series, not by the code under test)."""
    if symbol not in CURRENCIES:
        return 1.0
    closed = EURUSD[EURUSD.index + pd.Timedelta(days=1) <= ts]
    return float(closed.iloc[-1])


def test_storage_keeps_the_enum_values_of_execution_orders() -> None:
    assert tuple(s.value for s in OrderStatus) == ORDER_STATUSES
    assert {s.value for s in OrderStatus if s not in FINAL_STATES} == set(OPEN_ORDER_STATUSES)
    assert tuple(t.value for t in OrderType) == ORDER_TYPES
    assert tuple(t.value for t in TimeInForce) == TIMES_IN_FORCE
    assert tuple(s.value for s in Side) == SIDES
    # an Order is built as a copy of its row's fields (execution.oms._order): the same names
    assert {f.name for f in dataclasses.fields(Order)} == {f.name for f in dataclasses.fields(OrderRecord)}


def test_order_ids_made_in_one_millisecond_sort_in_creation_order() -> None:
    # orders are listed by (created_at, id): ids must not reorder orders of the same millisecond
    ts = pd.Timestamp("2024-01-02 14:30:00.123456", tz="UTC")
    ids = [new_order_id(ts) for _ in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert new_order_id(ts + pd.Timedelta(milliseconds=1)) > ids[-1]


@pytest.mark.parametrize(
    ("before", "fill", "after"),
    [
        ((0, 0, 0), (10, 100), (10, 100, 0)),  # open long
        ((10, 100, 0), (10, 110), (20, 105, 0)),  # add: the average moves
        ((10, 100, 0), (-4, 110), (6, 100, 40)),  # reduce: realise 4 * 10, keep the average
        ((10, 100, 0), (-10, 90), (0, 0, -100)),  # close at a loss: flat, average reset
        ((10, 100, 5), (-15, 110), (-5, 110, 105)),  # flip: close 10 (+100), open 5 short at 110
        ((-5, 110, 0), (8, 100), (3, 100, 50)),  # flip short to long: cover 5 (+50), long 3 at 100
        ((-5, 110, 0), (-5, 100), (-10, 105, 0)),  # add to a short
        ((0.1 + 0.2, 100, 0), (-0.3, 100), (0, 0, 0)),  # float dust counts as flat
    ],
)
def test_position_after_a_fill_by_average_cost(
    before: tuple[float, float, float], fill: tuple[float, float], after: tuple[float, float, float]
) -> None:
    assert position_after(*before, *fill) == pytest.approx(after)


# -- the property test ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated SQLite store for the module; each example trades its own account."""
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('oms') / 'fks.db'}")
    bars = pd.DataFrame({c: EURUSD.to_numpy() for c in ("open", "high", "low", "close")}, index=EURUSD.index)
    with engine.begin() as conn:
        upsert_bars(conn, "EURUSD", "1d", bars.assign(volume=1.0), source="test")
    yield engine
    engine.dispose()


# A step: what to do (weighted by repetition), which order it acts on (``pick``: mostly one of the
# open orders the move is legal for, so that fills happen; with ``anyone == 0`` any order the
# example knows, so that illegal moves are tried too), and the parameters of a submit or a fill.
KINDS = ("submit",) * 3 + ("fill",) * 5 + ("accept",) * 2 + ("replay", "cancel", "expire", "reject")
_step = st.tuples(
    st.sampled_from(KINDS),
    st.tuples(st.integers(min_value=0, max_value=50), st.integers(min_value=0, max_value=6)),
    st.sampled_from(SYMBOLS),
    st.sampled_from(Side),
    st.floats(min_value=0.5, max_value=50.0).map(lambda q: round(q, 3)),  # quantity
    st.booleans(),  # a bracket
    st.sampled_from([0.25, 0.5, 1 / 3, 1.0, 1.0]),  # a fill's share of the remaining quantity
    st.floats(min_value=1.0, max_value=1_000.0).map(lambda p: round(p, 2)),  # a fill's price
    st.floats(min_value=0.0, max_value=5.0).map(lambda f: round(f, 2)),  # a fill's fee
)

_FILLABLE = {OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
_LATE = {OrderStatus.CANCELLED, OrderStatus.EXPIRED}  # a fill can still arrive (booked, no transition)
_WANTS = {
    "fill": _FILLABLE,
    "cancel": _FILLABLE,
    "expire": _FILLABLE,
    "replay": _FILLABLE,
    "accept": {OrderStatus.SUBMITTED},
    "reject": {OrderStatus.SUBMITTED},
}
_TARGET = {
    "accept": OrderStatus.ACCEPTED,
    "cancel": OrderStatus.CANCELLED,
    "expire": OrderStatus.EXPIRED,
    "reject": OrderStatus.REJECTED,
}


def _check_books(
    engine: Engine, oms: OrderManager, fills: list[tuple[str, float, float, float, float]]
) -> None:
    """The invariants, against what the test itself saw filled (symbol, signed qty, price, fee,
    the rate it expects)."""
    account = oms.account
    with engine.connect() as conn:
        positions = {p.symbol: p for p in list_positions(conn, account)}
        stored_fills = list_fills(conn, account)
        stored = get_account(conn, account)
        open_ids = {o.id for o in list_orders(conn, account) if OrderStatus(o.status) not in FINAL_STATES}
    assert stored is not None
    assert [(f.symbol, f.signed_quantity, f.price, f.fee, f.fx_rate) for f in stored_fills] == fills
    for symbol in SYMBOLS:
        expected = math.fsum(q for s, q, _, _, _ in fills if s == symbol)
        held = positions[symbol].quantity if symbol in positions else 0.0
        assert held == pytest.approx(expected, abs=1e-6)
        if symbol in positions:  # in the quote currency: what the symbol's fills paid = basis - realised
            mine = [(q, p) for s, q, p, _, _ in fills if s == symbol]
            p = positions[symbol]
            paid = math.fsum(q * px for q, px in mine)
            assert p.quantity * p.avg_cost - p.realised_pnl == pytest.approx(paid, abs=1e-6)
    # base currency: cash = initial - sum of base-currency cost - fees, each fill at its own rate
    spent = math.fsum(q * p * r for _, q, p, _, r in fills)
    fees = math.fsum(f * r for _, _, _, f, r in fills)
    assert stored.cash == pytest.approx(INITIAL_CASH - spent - fees, abs=1e-6)
    # average cost: cash + cost basis of what is held = initial cash + realised P&L - fees (base)
    basis = math.fsum(p.quantity * (p.avg_cost_base or 0.0) for p in positions.values())
    realised = math.fsum(p.realised_pnl_base or 0.0 for p in positions.values())
    assert stored.cash + basis == pytest.approx(INITIAL_CASH + realised - fees, abs=1e-6)
    # the in-memory view is the database
    assert oms.cash() == stored.cash
    assert oms.positions() == positions
    assert {o.id for o in oms.open_orders()} == open_ids


def _check_histories(engine: Engine, oms: OrderManager) -> None:
    """Every order's status history in ``audit_log`` is a legal path ending in its stored status."""
    with engine.connect() as conn:
        orders = {o.id: o for o in list_orders(conn, oms.account)}
        history: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
        for entry in list_audit(conn):
            order_id = entry.subject.removeprefix("order:")
            if order_id not in orders:
                continue
            if entry.action == "order.created":
                history[order_id].append((None, entry.details["to"]))
            elif entry.action == "order.transition":
                history[order_id].append((entry.details["from"], entry.details["to"]))
    assert set(history) == set(orders)
    for order_id, steps in history.items():
        assert steps[0] == (None, "new"), (order_id, steps)
        for (_, previous), (start, end) in itertools.pairwise(steps):
            assert start == previous, (order_id, steps)
            assert OrderStatus(end) in TRANSITIONS[OrderStatus(start)], (order_id, steps)
        assert steps[-1][1] == orders[order_id].status


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=8, max_size=40))
def test_books_always_equal_the_fills_and_every_transition_is_legal(
    store: Engine, steps: list[tuple]
) -> None:
    account = f"prop-{uuid.uuid4().hex[:12]}"
    oms = OrderManager(store, account, initial_cash=INITIAL_CASH, currencies=CURRENCIES)
    orders: list[Order] = []  # every order the test knows of, bracket children included
    applied: list[tuple[Fill, str]] = []
    fills: list[tuple[str, float, float, float, float]] = []
    late_fills = 0

    for n, (kind, (pick, anyone), symbol, side, quantity, bracket, share, price, fee) in enumerate(steps):
        if kind == "submit":
            kw = {"take_profit": 2_000.0, "stop_loss": 0.5} if bracket and side is Side.BUY else {}
            if bracket and side is Side.SELL:
                kw = {"take_profit": 0.5, "stop_loss": 2_000.0}
            order = oms.submit(OrderRequest(f"c{n}", account, symbol, side, quantity, **kw))
            orders.append(oms.accept(order.id) if anyone else order)  # mostly acknowledged at once
            continue
        if not orders:
            continue
        wanted = _WANTS[kind]
        candidates = [o for o in oms.open_orders() if o.status in wanted] if anyone else []
        candidates = candidates or orders
        order = oms.order(candidates[pick % len(candidates)].id)
        if kind == "replay":
            if applied:
                fill, broker_id = applied[pick % len(applied)]
                assert oms.apply_fill(fill, broker_id).duplicate
        elif kind == "fill":
            part = order.remaining * share if order.remaining > 0 else quantity
            fill = Fill(order.id, order.symbol, order.side, part, price, fee, TS + n * STEP)
            broker_id = f"{account}-f{n}"
            late = order.status in _LATE and order.remaining > 0  # a cancel that crossed the fill
            if order.status in _FILLABLE or late:
                outcome = oms.apply_fill(fill, broker_id)
                assert not outcome.duplicate and outcome.late == late
                late_fills += late
                after = {order.status} if late else {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED}
                assert outcome.order.status in after
                applied.append((fill, broker_id))
                fills.append((order.symbol, fill.signed_quantity, price, fee, _rate(order.symbol, fill.ts)))
                orders.extend(outcome.created)
            else:
                with pytest.raises(ValueError if order.status in _LATE else IllegalTransition):
                    oms.apply_fill(fill, broker_id)
        else:
            target = _TARGET[kind]
            legal = target in TRANSITIONS[order.status]
            move = {
                "accept": lambda o=order: oms.accept(o.id),
                "cancel": lambda o=order: oms.cancel(o.id),
                "expire": lambda o=order: oms.expire(o.id),
                "reject": lambda o=order: oms.reject(o.id, "broker", "refused by the broker"),
            }[kind]
            if legal:
                before = {o.id for o in oms.open_orders()}
                result = move()
                assert result.status in (target, OrderStatus.CANCELLED)
                orders.extend(o for o in oms.open_orders() if o.id not in before)  # bracket children
            else:
                with pytest.raises(IllegalTransition):
                    move()
        _check_books(store, oms, fills)

    statuses = {oms.order(o.id).status for o in orders}
    event(f"fills: {'0' if not fills else '1-4' if len(fills) < 5 else '5+'}")
    event(f"partially filled at the end: {OrderStatus.PARTIALLY_FILLED in statuses}")
    event(f"late fills: {late_fills > 0}")
    event(f"EUR fills: {any(s == 'SAP' for s, *_ in fills)}")
    event(f"EUR fills at several rates: {len({r for s, *_, r in fills if s == 'SAP'}) > 1}")
    event(f"bracket children: {any(o.parent_id for o in orders)}")
    _check_histories(store, oms)
    restarted = OrderManager(store, account)
    assert restarted.open_orders() == oms.open_orders()
    assert restarted.positions() == oms.positions()
    assert restarted.cash() == oms.cash()
