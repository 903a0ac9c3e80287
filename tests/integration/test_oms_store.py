"""The OMS on a real database (SQLite, and PostgreSQL when ``TEST_POSTGRES_URL`` is set):
idempotent submits and fills, the state machine, brackets, accounting, one transaction per
change (faults injected by database triggers), recovery after a crash, the kill switch, marks."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from execution.oms import Order, OrderConflict, OrderManager, TradingHalted, UnknownOrder
from execution.orders import Fill, IllegalTransition, OrderRequest, OrderStatus, OrderType, Side
from storage import list_audit
from storage.execution import (
    FillConflict,
    StaleOrder,
    get_order,
    get_trading_state,
    list_equity,
    list_fills,
    set_trading_state,
    transition_order,
)

TS = pd.Timestamp("2024-01-02 14:30", tz="UTC")
ACCOUNT = "paper"


@pytest.fixture
def oms(engine: Engine) -> OrderManager:
    return OrderManager(engine, ACCOUNT, initial_cash=10_000.0)


def _request(cid: str = "c1", side: Side = Side.BUY, quantity: float = 10, **kw: Any) -> OrderRequest:
    return OrderRequest(cid, ACCOUNT, kw.pop("symbol", "SPY"), side, quantity, **kw)


def _fill(order: Order, quantity: float, price: float, fee: float = 0.0) -> Fill:
    return Fill(order.id, order.symbol, order.side, quantity, price, fee, TS)


def _accepted(oms: OrderManager, request: OrderRequest) -> Order:
    return oms.accept(oms.submit(request).id)


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the execution tables and the audit log."""
    tables = {
        "orders": "id", "fills": "id", "positions": "account, symbol", "accounts": "name",
        "equity_history": "account, ts", "trading_state": "account", "audit_log": "id",
    }  # fmt: skip
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY {key}"))]
            for t, key in tables.items()
        }


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- idempotency ----------------------------------------------------------------------------------


def test_a_retried_submit_returns_the_stored_order_and_creates_nothing(
    engine: Engine, oms: OrderManager
) -> None:
    first = oms.submit(_request(limit_price=99.0, type=OrderType.LIMIT))
    assert first.status is OrderStatus.SUBMITTED
    before = _snapshot(engine)
    again = oms.submit(_request(limit_price=99.0, type=OrderType.LIMIT))
    assert again == first
    assert _snapshot(engine) == before

    with pytest.raises(OrderConflict, match=r"quantity: stored 10\.0, asked 11"):
        oms.submit(_request(quantity=11, limit_price=99.0, type=OrderType.LIMIT))
    assert _snapshot(engine) == before

    restarted = OrderManager(engine, ACCOUNT)  # after a restart, too
    assert restarted.submit(_request(limit_price=99.0, type=OrderType.LIMIT)).id == first.id
    assert _count(engine, "orders") == 1


def test_a_refused_request_keeps_its_reason_code_and_is_idempotent(engine: Engine, oms: OrderManager) -> None:
    refused = oms.refuse(_request("r1"), "max_position", "SPY would be 120% of equity (limit 50%)")
    assert refused.status is OrderStatus.REJECTED
    assert (refused.reject_code, refused.reject_reason) == (
        "max_position",
        "SPY would be 120% of equity (limit 50%)",
    )
    assert oms.refuse(_request("r1"), "max_position", "again") == refused
    assert oms.submit(_request("r1")) == refused  # the key is taken by the refused order
    assert oms.open_orders() == []
    assert _history(engine, refused.id) == [(None, "new"), ("new", "rejected")]


def _history(engine: Engine, order_id: str) -> list[tuple[str | None, str]]:
    """The status history of one order from ``audit_log``: (from, to), creation first."""
    with engine.connect() as conn:
        rows = [e for e in list_audit(conn) if e.subject == f"order:{order_id}"]
    return [
        (None, e.details["to"]) if e.action == "order.created" else (e.details["from"], e.details["to"])
        for e in rows
        if e.action in ("order.created", "order.transition")
    ]


def test_a_replayed_fill_is_counted_once_and_a_conflicting_one_refused(
    engine: Engine, oms: OrderManager
) -> None:
    order = _accepted(oms, _request())
    first = oms.apply_fill(_fill(order, 4, 100.0, 0.4), "brk-1")
    assert not first.duplicate
    before = _snapshot(engine)
    replay = oms.apply_fill(_fill(order, 4, 100.0, 0.4), "brk-1")
    assert replay.duplicate and replay.fill_id == first.fill_id
    assert replay.position.quantity == 4 and replay.cash == pytest.approx(10_000 - 400.4)
    assert _snapshot(engine) == before
    with pytest.raises(FillConflict, match="recorded already"):
        oms.apply_fill(_fill(order, 5, 100.0, 0.4), "brk-1")
    assert _snapshot(engine) == before
    assert oms.cash() == pytest.approx(10_000 - 400.4)


def test_two_accounts_book_fills_of_the_same_broker_id_each_once(engine: Engine, oms: OrderManager) -> None:
    """Two paper accounts trading SPY on the same bar: the same client order id and the paper
    brokers' same fill id (``<client order id>-1``); each account books its own fill once (a
    broker's fill ids are unique per account: migration 0017)."""
    other = OrderManager(engine, "paper-2", initial_cash=10_000.0)
    mine, theirs = (
        _accepted(oms, _request("20240102T1430-SPY")),
        other.accept(other.submit(OrderRequest("20240102T1430-SPY", "paper-2", "SPY", Side.BUY, 10)).id),
    )
    first = oms.apply_fill(_fill(mine, 10, 100.0, 0.1), "20240102T1430-SPY-1")
    second = other.apply_fill(_fill(theirs, 10, 100.0, 0.1), "20240102T1430-SPY-1")
    assert not first.duplicate and not second.duplicate and first.fill_id != second.fill_id
    assert oms.apply_fill(_fill(mine, 10, 100.0, 0.1), "20240102T1430-SPY-1").duplicate
    assert other.apply_fill(_fill(theirs, 10, 100.0, 0.1), "20240102T1430-SPY-1").duplicate
    with pytest.raises(FillConflict, match="recorded already"):
        other.apply_fill(_fill(theirs, 9, 100.0, 0.1), "20240102T1430-SPY-1")
    with engine.connect() as conn:
        assert [f.order_id for f in list_fills(conn, ACCOUNT)] == [mine.id]
        assert [f.order_id for f in list_fills(conn, "paper-2")] == [theirs.id]
    assert oms.positions()["SPY"].quantity == other.positions()["SPY"].quantity == 10


def test_orders_are_found_by_client_order_id_as_brokers_know_them(oms: OrderManager) -> None:
    order = oms.submit(_request("sig-1"))
    assert oms.accept("sig-1").id == order.id
    broker_fill = Fill("sig-1", "SPY", Side.BUY, 10, 100.0, 0.1, TS)  # the paper broker's order id
    out = oms.apply_fill(broker_fill, "sig-1-1")
    assert out.order.id == order.id and out.order.status is OrderStatus.FILLED
    assert oms.order("sig-1") == oms.order(order.id)
    with pytest.raises(UnknownOrder, match="no order with id or client_order_id 'sig-2'"):
        oms.order("sig-2")


# -- the state machine ----------------------------------------------------------------------------


def test_illegal_transitions_raise_and_change_nothing(engine: Engine, oms: OrderManager) -> None:
    order = oms.submit(_request())
    before = _snapshot(engine)
    with pytest.raises(IllegalTransition, match="submitted -> cancelled"):
        oms.cancel(order.id)
    with pytest.raises(IllegalTransition, match="submitted -> partially_filled"):
        oms.apply_fill(_fill(order, 1, 100.0), "brk-early")
    with pytest.raises(IllegalTransition, match="submitted -> expired"):
        oms.expire(order.id)
    assert _snapshot(engine) == before

    oms.accept(order.id)
    oms.apply_fill(_fill(order, 10, 100.0), "brk-1")
    before = _snapshot(engine)
    for move in (
        lambda: oms.accept(order.id),
        lambda: oms.cancel(order.id),
        lambda: oms.reject(order.id, "late", "too late"),
        lambda: oms.apply_fill(_fill(order, 1, 100.0), "brk-2"),
    ):
        with pytest.raises(IllegalTransition, match="final state"):
            move()
    assert _snapshot(engine) == before
    assert oms.order(order.id).status is OrderStatus.FILLED
    with pytest.raises(UnknownOrder):
        oms.cancel("no-such-order")


def test_a_write_from_a_stale_read_is_refused(engine: Engine, oms: OrderManager) -> None:
    order = oms.submit(_request())
    with engine.connect() as conn:
        stale = get_order(conn, order.id)
    assert stale is not None
    oms.accept(order.id)
    with pytest.raises(StaleOrder, match="changed since it was read"), engine.begin() as conn:
        transition_order(conn, stale, "rejected", actor="test", reject_code="x")
    assert oms.order(order.id).status is OrderStatus.ACCEPTED


def test_a_manager_whose_view_another_process_moved_decides_on_the_stored_rows(
    engine: Engine, oms: OrderManager
) -> None:
    """A manager starts a change from the rows as it last wrote them (no read); when another
    manager (another process) has moved them since, its compare-and-set matches nothing and it
    reads the stored rows and decides on them, as if it had read them first."""
    filled = _accepted(oms, _request("f1"))
    resting = _accepted(oms, _request("r1"))
    pending = oms.submit(_request("p1"))
    other = OrderManager(engine, ACCOUNT)  # the same account in another process
    other.apply_fill(_fill(filled, 10, 100.0, 1.0), "x-1")  # the position is 10 SPY now
    other.cancel(resting.id)
    other.reject(pending.id, "broker", "no")

    # oms still holds f1 and r1 ACCEPTED, p1 SUBMITTED and no SPY position
    with pytest.raises(IllegalTransition, match="rejected -> accepted"):
        oms.accept(pending.id)
    late = oms.apply_fill(_fill(resting, 4, 101.0), "x-2")  # crossed the other's cancel
    assert late.late and late.order.status is OrderStatus.CANCELLED and late.order.filled_quantity == 4
    assert late.position.quantity == 14 and late.position.avg_cost == pytest.approx((1_000 + 404) / 14)
    assert late.cash == pytest.approx(10_000 - 1_001 - 404)
    assert oms.apply_fill(_fill(filled, 10, 100.0, 1.0), "x-1").duplicate  # the other's fill
    after = OrderManager(engine, ACCOUNT)
    assert after.positions()["SPY"].quantity == 14 and after.cash() == pytest.approx(late.cash)
    assert after.positions()["SPY"].avg_cost == late.position.avg_cost
    assert _count(engine, "fills") == 2 and after.open_orders() == []


def test_statuses_and_quantities_are_constrained_in_sql(engine: Engine, oms: OrderManager) -> None:
    order = oms.submit(_request())
    for assignment in ("status = 'bogus'", "filled_quantity = 11", "filled_quantity = -1", "quantity = 0"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(f"UPDATE orders SET {assignment} WHERE id = :id"), {"id": order.id})


# -- fills and accounting -------------------------------------------------------------------------


def test_partial_fills_average_the_price_and_overfills_are_refused(engine: Engine, oms: OrderManager) -> None:
    order = _accepted(oms, _request(limit_price=111.0, type=OrderType.LIMIT))
    first = oms.apply_fill(_fill(order, 4, 100.0, 0.4), "b1")
    assert first.order.status is OrderStatus.PARTIALLY_FILLED
    assert (first.order.filled_quantity, first.order.avg_fill_price) == (4, 100.0)
    second = oms.apply_fill(_fill(order, 3, 110.0, 0.3), "b2")
    assert second.order.status is OrderStatus.PARTIALLY_FILLED
    assert second.order.avg_fill_price == pytest.approx((400 + 330) / 7)
    before = _snapshot(engine)
    with pytest.raises(ValueError, match=r"exceeds its remaining 3"):
        oms.apply_fill(_fill(order, 3.5, 110.0), "b3")
    assert _snapshot(engine) == before
    last = oms.apply_fill(_fill(order, 3, 120.0, 0.3), "b3")
    assert last.order.status is OrderStatus.FILLED
    assert last.order.avg_fill_price == pytest.approx(109.0)  # (400 + 330 + 360) / 10
    assert last.position.quantity == 10 and last.position.avg_cost == pytest.approx(109.0)
    assert oms.cash() == pytest.approx(10_000 - 1_090 - 1.0)
    assert oms.open_orders() == []


def test_a_position_flip_realises_the_hand_computed_pnl(engine: Engine, oms: OrderManager) -> None:
    buy = _accepted(oms, _request("b", Side.BUY, 10))
    oms.apply_fill(_fill(buy, 10, 100.0, 1.0), "f1")  # long 10 @ 100
    sell = _accepted(oms, _request("s", Side.SELL, 15))
    out = oms.apply_fill(_fill(sell, 15, 110.0, 1.5), "f2")  # closes 10 (+100), opens short 5 @ 110
    assert (out.position.quantity, out.position.avg_cost, out.position.realised_pnl) == (-5, 110.0, 100.0)
    cover = _accepted(oms, _request("c", Side.BUY, 5))
    out = oms.apply_fill(_fill(cover, 5, 90.0, 0.5), "f3")  # covers 5 short at 90: +100
    assert (out.position.quantity, out.position.avg_cost, out.position.realised_pnl) == (0, 0.0, 200.0)
    # cash: 10000 - 1000 - 1 + 1650 - 1.5 - 450 - 0.5 = initial + realised - fees
    assert out.cash == pytest.approx(10_197.0) == pytest.approx(10_000 + 200 - 3)
    assert oms.positions()["SPY"].realised_pnl == 200.0
    with engine.connect() as conn:
        assert [f.signed_quantity for f in list_fills(conn, ACCOUNT)] == [10, -15, 5]


# -- brackets -------------------------------------------------------------------------------------


def test_a_filled_bracket_places_oco_children_and_one_fill_cancels_the_other(
    engine: Engine, oms: OrderManager
) -> None:
    parent = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    partial = oms.apply_fill(_fill(parent, 4, 100.0), "p1")
    assert partial.created == ()  # children come when the parent is done
    done = oms.apply_fill(_fill(parent, 6, 100.0), "p2")
    tp, sl = done.created
    assert (tp.type, tp.side, tp.quantity, tp.limit_price, tp.status) == (
        OrderType.LIMIT, Side.SELL, 10, 110.0, OrderStatus.SUBMITTED,
    )  # fmt: skip
    assert (sl.type, sl.side, sl.quantity, sl.stop_price, sl.status) == (
        OrderType.STOP, Side.SELL, 10, 95.0, OrderStatus.SUBMITTED,
    )  # fmt: skip
    assert tp.parent_id == sl.parent_id == tp.oco_group == sl.oco_group == parent.id
    assert {o.id for o in oms.open_orders()} == {tp.id, sl.id}
    oms.accept(tp.id)
    oms.accept(sl.id)
    half = oms.apply_fill(_fill(sl, 5, 95.0), "s1")
    assert half.cancelled == ()  # a partial fill cancels nothing
    assert oms.order(tp.id).status is OrderStatus.ACCEPTED
    out = oms.apply_fill(_fill(sl, 5, 94.0), "s2")
    assert [(o.id, o.status) for o in out.cancelled] == [(tp.id, OrderStatus.CANCELLED)]
    assert out.position.quantity == 0 and out.position.realised_pnl == pytest.approx(-5 * 5 - 6 * 5)
    assert oms.open_orders() == []
    # a replay of the parent's last fill places nothing again
    assert oms.apply_fill(_fill(parent, 6, 100.0), "p2").created == ()
    assert _count(engine, "orders") == 3


def test_a_bracket_cancelled_before_any_fill_places_no_children(engine: Engine, oms: OrderManager) -> None:
    parent = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    assert oms.cancel(parent.id, "signal gone").status is OrderStatus.CANCELLED
    assert oms.open_orders() == [] and _count(engine, "orders") == 1


def test_a_bracket_cancelled_after_a_partial_fill_protects_what_was_filled(oms: OrderManager) -> None:
    parent = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    oms.apply_fill(_fill(parent, 3, 100.0), "p1")
    oms.expire(parent.id, "day order at the close")
    children = oms.open_orders()
    assert sorted((c.type, c.quantity) for c in children) == [(OrderType.LIMIT, 3), (OrderType.STOP, 3)]


def test_a_sibling_accepted_after_the_other_child_filled_is_cancelled_at_once(oms: OrderManager) -> None:
    parent = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    tp, sl = oms.apply_fill(_fill(parent, 10, 100.0), "p1").created
    oms.accept(tp.id)
    out = oms.apply_fill(_fill(tp, 10, 110.0), "t1")
    assert out.cancelled == ()  # the stop-loss was not accepted yet
    late = oms.accept(sl.id)
    assert late.status is OrderStatus.CANCELLED
    assert oms.open_orders() == []


def test_both_oco_legs_filled_on_one_bar_books_the_late_fill(engine: Engine, oms: OrderManager) -> None:
    parent = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    tp, sl = oms.apply_fill(_fill(parent, 10, 100.0), "p1").created
    oms.accept(tp.id)
    oms.accept(sl.id)
    assert [o.id for o in oms.apply_fill(_fill(tp, 10, 110.0), "t1").cancelled] == [sl.id]
    history = _history(engine, sl.id)
    # the venue had filled the stop-loss on the same bar before our cancel reached it
    late = oms.apply_fill(_fill(sl, 10, 95.0, 0.2), "s1")
    assert late.late and not late.duplicate
    assert (late.order.status, late.order.filled_quantity, late.order.avg_fill_price) == (
        OrderStatus.CANCELLED, 10, 95.0,
    )  # fmt: skip
    assert late.position.quantity == -10  # the real position: an exit too many, to close
    assert _history(engine, sl.id) == history  # no transition
    assert oms.apply_fill(_fill(sl, 10, 95.0, 0.2), "s1").duplicate
    with pytest.raises(ValueError, match="exceeds its remaining 0"):
        oms.apply_fill(_fill(sl, 1, 95.0), "s2")
    assert oms.cash() == pytest.approx(10_000 - 1_000 + 1_100 + 950 - 0.2)


def test_the_books_reconcile_with_the_paper_broker(engine: Engine) -> None:
    """The OMS driven by :class:`execution.broker.PaperBroker` on hourly bars: partial fills
    (volume cap), brackets placed and cancelled at the broker, an IOC remainder cancelled there,
    every fill replayed once; at the end the OMS's cash, positions and fees are the broker's."""
    import numpy as np

    from execution.broker import Bar, PaperBroker, PaperCosts
    from execution.orders import TimeInForce

    oms = OrderManager(engine, ACCOUNT, initial_cash=100_000.0)
    broker = PaperBroker(PaperCosts(volume_share=0.5), account=ACCOUNT, cash=100_000.0)
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    closes = {
        "BTC": 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 96))),
        "ETH": 50.0 * np.exp(np.cumsum(rng.normal(0, 0.015, 96))),
    }
    volumes = rng.choice([2.0, 6.0, 40.0], size=96)

    def bar(symbol: str, i: int) -> Bar:
        close = float(closes[symbol][i])
        open_ = float(closes[symbol][i - 1]) if i else close
        return Bar(
            start + pd.Timedelta(hours=i),
            open_,
            max(open_, close) * 1.004,
            min(open_, close) * 0.996,
            close,
            float(volumes[i]),
        )

    def send(order: Order, decided: pd.Timestamp) -> None:
        ack = broker.submit(order.broker_request, decided_at=decided)
        assert ack.accepted, ack.reason
        oms.accept(order.id)

    t0 = start
    send(oms.submit(_request("btc-1", quantity=8, symbol="BTC", take_profit=104.0, stop_loss=97.0)), t0)
    send(oms.submit(_request("eth-1", quantity=20, symbol="ETH", type=OrderType.LIMIT, limit_price=49.5,
                             take_profit=53.0, stop_loss=47.0)), t0)  # fmt: skip
    send(oms.submit(_request("btc-ioc", side=Side.SELL, quantity=30, symbol="BTC",
                             time_in_force=TimeInForce.IOC)), t0)  # fmt: skip
    for i in range(1, 96):
        for symbol in ("BTC", "ETH"):
            for fill in broker.on_bar(symbol, bar(symbol, i)):
                out = oms.apply_fill(fill, fill.broker_fill_id)
                assert oms.apply_fill(fill, fill.broker_fill_id).duplicate
                for child in out.created:
                    send(child, start + pd.Timedelta(hours=i))
                for sibling in out.cancelled:
                    broker.cancel(sibling.client_order_id)
        for order in oms.open_orders():  # what the broker ended on its own (IOC remainders)
            status = broker.order(order.client_order_id).status
            if status is OrderStatus.CANCELLED:
                oms.cancel(order.id, broker.order(order.client_order_id).reason)

    snapshot = broker.account()
    assert oms.cash() == pytest.approx(snapshot.cash, abs=1e-6)
    held = {s: p.quantity for s, p in oms.positions().items() if p.quantity != 0}
    assert held == pytest.approx(dict(snapshot.positions), abs=1e-9)
    with engine.connect() as conn:
        fills = list_fills(conn, ACCOUNT)
    assert sum(f.fee for f in fills) == pytest.approx(snapshot.fees)
    assert len(fills) == len(broker.fills()) >= 4
    assert any(o.parent_id for o in (oms.order(f.order_id) for f in fills))  # a bracket leg traded
    statuses = {o.order_id: o.status for o in broker.orders()}
    assert {o.status for o in oms.open_orders()} <= {OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED}
    for order in oms.open_orders():
        assert statuses[order.client_order_id] in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
    assert oms.order("btc-ioc").status is OrderStatus.CANCELLED


def test_a_bracket_with_inverted_prices_is_refused() -> None:
    from execution.oms import _check_bracket

    with pytest.raises(ValueError, match="stop_loss below take_profit"):
        _check_bracket(_request(take_profit=90.0, stop_loss=95.0))
    with pytest.raises(ValueError, match="take_profit must be above its limit price"):
        _check_bracket(_request(type=OrderType.LIMIT, limit_price=100.0, take_profit=99.0))
    _check_bracket(_request(side=Side.SELL, take_profit=90.0, stop_loss=95.0))


# -- one transaction per change -------------------------------------------------------------------


def _fail_inserts_into(conn: Connection, table: str) -> None:
    """A trigger that aborts any insert into ``table``: a crash at that point of a transaction."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )
    else:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION fks_injected() RETURNS trigger AS "
            "$$ BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION fks_injected()"
        )


def _drop_trigger(conn: Connection, table: str) -> None:
    on = "" if conn.dialect.name == "sqlite" else f" ON {table}"
    conn.exec_driver_sql(f"DROP TRIGGER fail_{table}{on}")


# The fill's transaction writes the order (compare-and-set) first, then the fill, the position, the
# cash and the audit rows: a fault at the fill insert comes after the order update, one at the
# position after the fill insert, one at the audit after all of them.
@pytest.mark.parametrize("table", ["fills", "positions", "audit_log"])
def test_a_transaction_that_fails_midway_leaves_no_partial_state(
    engine: Engine, oms: OrderManager, table: str
) -> None:
    order = _accepted(oms, _request(take_profit=110.0, stop_loss=95.0))
    before = _snapshot(engine)
    view = (oms.open_orders(), oms.positions(), oms.cash())
    with engine.begin() as conn:
        _fail_inserts_into(conn, table)
    with pytest.raises(Exception, match="injected"):
        oms.apply_fill(_fill(order, 10, 100.0, 1.0), "brk-1")
    with engine.begin() as conn:
        _drop_trigger(conn, table)
    assert _snapshot(engine) == before  # not the order's status, not a fill, not cash, not audit
    assert (oms.open_orders(), oms.positions(), oms.cash()) == view

    restarted = OrderManager(engine, ACCOUNT)  # the broker replays the fill after the restart
    out = restarted.apply_fill(_fill(order, 10, 100.0, 1.0), "brk-1")
    assert not out.duplicate and len(out.created) == 2
    assert restarted.apply_fill(_fill(order, 10, 100.0, 1.0), "brk-1").duplicate
    assert restarted.cash() == pytest.approx(10_000 - 1_001) and _count(engine, "fills") == 1


# -- recovery -------------------------------------------------------------------------------------


def test_a_restart_rebuilds_open_orders_and_positions_and_sends_nothing_twice(engine: Engine) -> None:
    first = OrderManager(engine, ACCOUNT, initial_cash=10_000.0)
    a = _accepted(first, _request("a", symbol="SPY", take_profit=120.0, stop_loss=90.0))
    first.apply_fill(_fill(a, 10, 100.0, 1.0), "fa")
    b = _accepted(first, _request("b", symbol="QQQ", quantity=5, type=OrderType.LIMIT, limit_price=400.0))
    first.apply_fill(_fill(b, 2, 399.0, 0.5), "fb")
    c = first.submit(_request("c", symbol="IWM", side=Side.SELL, quantity=3))
    open_before = first.open_orders()
    assert {o.client_order_id for o in open_before} == {f"{a.id}-tp", f"{a.id}-sl", "b", "c"}
    del first  # a crash: nothing is flushed or closed
    audit_rows, orders = _count(engine, "audit_log"), _count(engine, "orders")

    second = OrderManager(engine, ACCOUNT)
    assert second.open_orders() == open_before
    assert {s: (p.quantity, p.avg_cost) for s, p in second.positions().items()} == {
        "SPY": (10, 100.0), "QQQ": (2, 399.0),
    }  # fmt: skip
    assert second.cash() == pytest.approx(10_000 - 1_001 - 798.5)
    assert (_count(engine, "audit_log"), _count(engine, "orders")) == (audit_rows, orders)  # nothing sent
    # the strategy retries what it was doing when it crashed: nothing is created twice
    assert second.submit(_request("c", symbol="IWM", side=Side.SELL, quantity=3)).id == c.id
    assert second.apply_fill(_fill(b, 2, 399.0, 0.5), "fb").duplicate
    assert (_count(engine, "orders"), _count(engine, "fills")) == (orders, 2)
    second.apply_fill(_fill(b, 3, 399.5, 0.5), "fb2")  # and trading goes on
    assert second.positions()["QQQ"].quantity == 5


def test_a_manager_needs_an_open_account(engine: Engine) -> None:
    with pytest.raises(LookupError, match="fks trade --paper --account nobody"):
        OrderManager(engine, "nobody")
    OrderManager(engine, "acct", initial_cash=5.0)
    with pytest.raises(ValueError, match="open already with initial cash 5"):
        OrderManager(engine, "acct", initial_cash=6.0)
    with pytest.raises(ValueError, match="for account 'other'"):
        OrderManager(engine, "acct").submit(OrderRequest("x", "other", "SPY", Side.BUY, 1))


# -- kill switch and marks ------------------------------------------------------------------------


def test_a_halted_account_takes_no_new_order(engine: Engine, oms: OrderManager) -> None:
    kept = oms.submit(_request("kept"))
    state = oms.halt("drawdown limit hit")
    assert state.halted and state.reason == "drawdown limit hit"
    with pytest.raises(TradingHalted, match=r"drawdown limit hit.*fks resume"):
        oms.submit(_request("new"))
    assert oms.order_by_client_id("new") is None
    assert oms.submit(_request("kept")) == kept  # a retry of a stored order still answers
    assert oms.refuse(_request("new2"), "halted", "trading halted").reject_code == "halted"
    oms.accept(kept.id)
    assert oms.cancel(kept.id).status is OrderStatus.CANCELLED  # exits and cancels still work
    oms.resume("reviewed")
    assert oms.submit(_request("new")).status is OrderStatus.SUBMITTED
    with engine.connect() as conn:
        assert [e.action for e in list_audit(conn) if e.action.startswith("trading.")] == [
            "trading.halt", "trading.resume",
        ]  # fmt: skip


def test_trading_state_defaults_to_not_halted_and_needs_a_reason(engine: Engine) -> None:
    with engine.begin() as conn:
        assert not get_trading_state(conn, "fresh").halted
        with pytest.raises(ValueError, match="say why"):
            set_trading_state(conn, "fresh", halted=True, reason=" ", actor="me")
        set_trading_state(conn, "fresh", halted=True, reason="manual", actor="me")  # no account needed
        assert get_trading_state(conn, "fresh").halted


def test_marks_record_cash_plus_market_value(engine: Engine, oms: OrderManager) -> None:
    order = _accepted(oms, _request())
    oms.apply_fill(_fill(order, 10, 100.0, 1.0), "f1")
    point = oms.mark_to_market({"SPY": 105.0}, TS)
    assert (point.cash, point.market_value, point.equity) == pytest.approx((8_999.0, 1_050.0, 10_049.0))
    oms.mark_to_market({"SPY": 106.0}, TS)  # the same time again replaces the mark
    oms.mark_to_market({"SPY": 104.0}, TS + pd.Timedelta("1D"))
    with pytest.raises(ValueError, match="no usable price for SPY"):
        oms.mark_to_market({"QQQ": 1.0}, TS)
    with engine.connect() as conn:
        frame = list_equity(conn, ACCOUNT)
    assert list(frame.index) == [TS, TS + pd.Timedelta("1D")]
    assert list(frame["equity"]) == pytest.approx([10_059.0, 10_039.0])
