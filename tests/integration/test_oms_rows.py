"""What the OMS returns and keeps in memory is exactly the order row as stored (SQLite, and
PostgreSQL when ``TEST_POSTGRES_URL`` is set): storage builds the record it returns after an
insert or a compare-and-set from the values it wrote instead of reading the row back, so every
field (its value and its type: floats, millisecond UTC timestamps) is compared here with a fresh
read, through each path (submit, refuse, accept, reject, partial and full fills, bracket
children, OCO cancels, late fills, cancel, expire), and the audit rows come in their order."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from execution.oms import Order, OrderManager
from execution.orders import Fill, OrderRequest, OrderStatus, OrderType, Side
from storage import list_audit
from storage.execution import OrderRecord, get_order, insert_order, transition_order

TS = pd.Timestamp("2024-01-02 14:30", tz="UTC")
ACCOUNT = "paper"


def _shape(value: Any) -> Any:
    """``value`` with its type, NaN equal to NaN and a timestamp's unit and zone."""
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, pd.Timestamp):
        return (value.value, value.unit, str(value.tz))
    return (type(value).__name__, value)


def _same(returned: Any, stored: Any) -> None:
    assert type(returned) is type(stored)
    for f in dataclasses.fields(returned):
        a, b = getattr(returned, f.name), getattr(stored, f.name)
        assert _shape(a) == _shape(b), (f.name, a, b)


def _check(engine: Engine, *orders: Order) -> None:
    """Each order as returned is the row read afresh, and the manager's view is a restart's."""
    fresh = OrderManager(engine, ACCOUNT)
    for order in orders:
        _same(order, fresh.order(order.id))


def _request(cid: str, side: Side = Side.BUY, quantity: float = 10, **kw: Any) -> OrderRequest:
    return OrderRequest(cid, ACCOUNT, "SPY", side, quantity, **kw)


def _fill(order: Order, quantity: float, price: float) -> Fill:
    return Fill(order.id, order.symbol, order.side, quantity, price, 0.25, TS)


def test_every_returned_order_is_the_row_as_stored(engine: Engine) -> None:
    oms = OrderManager(engine, ACCOUNT, initial_cash=100_000.0)
    # sub-millisecond decision time, integer prices and confidence: stored as ms and floats
    decided = pd.Timestamp("2024-01-02 14:29:59.123456789", tz="UTC")
    submitted = oms.submit(
        _request("b1", type=OrderType.LIMIT, limit_price=100, take_profit=110, stop_loss=95,
                 model="m", model_version="1", confidence=1, decided_at=decided)
    )  # fmt: skip
    _check(engine, submitted)
    assert submitted.limit_price == 100.0 and isinstance(submitted.limit_price, float)
    assert submitted.decided_at == decided.floor("ms")

    refused = oms.refuse(_request("r1"), "max_position", "too big")
    accepted = oms.accept(submitted.id)
    _check(engine, refused, accepted)

    partial = oms.apply_fill(_fill(accepted, 4, 100.0), "f1")
    _check(engine, partial.order)
    full = oms.apply_fill(_fill(accepted, 6, 99.5), "f2")
    assert full.order.status is OrderStatus.FILLED and len(full.created) == 2
    _check(engine, full.order, *full.created)
    replay = oms.apply_fill(_fill(accepted, 6, 99.5), "f2")
    assert replay.duplicate
    _check(engine, replay.order)

    take_profit, stop_loss = full.created
    tp = oms.accept(take_profit.id)
    _check(engine, tp)
    tp_fill = oms.apply_fill(_fill(tp, 10, 110.0), "f3")
    assert [o.id for o in tp_fill.cancelled] == []  # the stop-loss was not accepted yet
    late_sibling = oms.accept(stop_loss.id)  # its sibling filled: cancelled at once
    assert late_sibling.status is OrderStatus.CANCELLED
    _check(engine, tp_fill.order, late_sibling)

    # a fill crossing a cancel is booked late; expire and reject
    crossed = oms.accept(oms.submit(_request("c1", quantity=5)).id)
    _check(engine, crossed)
    cancelled = oms.cancel(crossed.id, reason="replaced")
    late = oms.apply_fill(_fill(crossed, 5, 101.0), "f4")
    assert late.late
    expired = oms.expire(oms.accept(oms.submit(_request("e1")).id).id, "day over")
    rejected = oms.reject(oms.submit(_request("j1")).id, "broker", "no")
    _check(engine, late.order, expired, rejected)
    assert cancelled.status is late.order.status is OrderStatus.CANCELLED

    # an OCO sibling cancelled by its sibling's fill
    parent = oms.accept(oms.submit(_request("b2", take_profit=120.0, stop_loss=90.0)).id)
    children = oms.apply_fill(_fill(parent, 10, 100.0), "f5").created
    a, b = (oms.accept(c.id) for c in children)
    _check(engine, a, b)
    outcome = oms.apply_fill(_fill(b, 10, 90.0), "f6")
    assert [o.id for o in outcome.cancelled] == [a.id]
    _check(engine, outcome.order, *outcome.cancelled)

    restarted = OrderManager(engine, ACCOUNT)
    assert len(oms.open_orders()) == len(restarted.open_orders())
    for mine, theirs in zip(oms.open_orders(), restarted.open_orders(), strict=True):
        _same(mine, theirs)
    assert restarted.cash() == oms.cash() and restarted.positions() == oms.positions()

    # the audit rows of one order, in the order of its changes
    with engine.connect() as conn:
        actions = [(e.action, e.details.get("to")) for e in list_audit(conn) if e.subject == f"order:{b.id}"]
    assert actions == [
        ("order.created", "new"), ("order.transition", "submitted"), ("order.transition", "accepted"),
        ("order.transition", "filled"), ("order.fill", None),
    ]  # fmt: skip


def test_a_value_that_does_not_read_back_as_written_is_read_back(engine: Engine) -> None:
    """A NaN confidence (SQLite keeps NULL): the record returned is the row read afresh."""
    oms = OrderManager(engine, ACCOUNT, initial_cash=1_000.0)
    order = oms.submit(_request("n1", confidence=math.nan))
    _check(engine, order)


def test_storage_returns_the_row_as_stored_after_an_insert_and_a_transition(engine: Engine) -> None:
    OrderManager(engine, ACCOUNT, initial_cash=1_000.0)
    now = pd.Timestamp("2024-01-02 14:30:00.000999999", tz="UTC")
    record = OrderRecord(
        id="o1", client_order_id="k1", account=ACCOUNT, symbol="SPY", side="buy", type="stop",
        time_in_force="gtc", quantity=3, status="new", created_at=now, updated_at=now,
        stop_price=7, filled_quantity=0, decided_at=now,
    )  # fmt: skip
    with engine.begin() as conn:
        inserted = insert_order(conn, record, actor="test")
        _same(inserted, get_order(conn, "o1"))
        moved = transition_order(conn, inserted, "rejected", actor="test", reject_code="x", reject_reason="y")
        _same(moved, get_order(conn, "o1"))
