"""The OMS's list operations (``submit_many``, ``accept_many``, ``apply_fills``: a desk cycle's
orders, acks and fills, each group written with one ``executemany`` per statement) write exactly
the rows, audit history and answers that the one-by-one operations write, fall back to them for
every case outside the plain one (brackets, a symbol twice, replays, rows moved by another
process), and are all or nothing. On SQLite and (with TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from execution.oms import FillOutcome, Order, OrderManager
from execution.orders import Fill, IllegalTransition, OrderRequest, OrderStatus, OrderType, Side
from storage import list_audit
from storage.execution import get_account, list_fills, list_orders, list_positions, transition_orders

TS = pd.Timestamp("2024-01-02", tz="UTC")
SYMBOLS = ("A", "B", "C", "D", "E", "F")
_STAMPS = {"created_at", "updated_at", "recorded_at", "fill_id", "id"}


def _request(account: str, cid: str, symbol: str, side: Side = Side.BUY, quantity: float = 10.0,
             **kw: Any) -> OrderRequest:  # fmt: skip
    return OrderRequest(cid, account, symbol, side, quantity, model="m", model_version="1", confidence=0.7,
                        decided_at=TS, **kw)  # fmt: skip


def _requests(account: str, prefix: str) -> list[OrderRequest]:
    """Five plain buys and a bracket (its children are placed when it fills)."""
    plain = [_request(account, f"{prefix}{s}", s) for s in SYMBOLS[:5]]
    bracket = _request(account, f"{prefix}F", "F", type=OrderType.LIMIT, limit_price=20.0, take_profit=25.0,
                       stop_loss=15.0)  # fmt: skip
    return [*plain[:2], bracket, *plain[2:]]


def _fills(
    orders: dict[str, Order], prefix: str, plan: list[tuple[str, float, float]], start: int = 0
) -> list[tuple[Fill, str]]:
    """``(symbol, quantity, price)`` fills of the orders ``prefix + symbol``, keyed by their place."""
    fills = []
    for k, (symbol, quantity, price) in enumerate(plan):
        order = orders[f"{prefix}{symbol}"]
        fills.append(
            (
                Fill(order.client_order_id, symbol, order.side, quantity, price, 0.5, TS),
                f"{prefix}-{start + k}",
            )
        )
    return fills


def _book(engine: Engine, account: str) -> dict[str, Any]:
    """Every row of ``account`` without its ids and times: orders by client id (parents and
    groups by client id too), fills, positions, cash, and the audit history in its order."""
    with engine.connect() as conn:
        orders = list_orders(conn, account)
        names = {o.id: o.client_order_id for o in orders}
        fills = list_fills(conn, account)
        positions = list_positions(conn, account)
        book = get_account(conn, account)
        audit = [e for e in list_audit(conn) if e.subject.removeprefix("order:") in names]

    def plain(value: Any) -> Any:  # an order id (or a bracket child's key from it) by client id
        if not isinstance(value, str):
            return value
        value = names.get(value, value)
        return names[value[:32]] + value[32:] if value[:32] in names else value

    def row(fields: dict[str, Any]) -> dict[str, Any]:
        return {k: plain(v) for k, v in fields.items() if k not in _STAMPS and k != "account"}

    assert book is not None
    return {
        "orders": sorted((row(vars(o)) for o in orders), key=lambda r: r["client_order_id"]),
        "fills": [row(vars(f)) for f in fills],
        "positions": [row(vars(p)) for p in positions],
        "cash": book.cash,
        "audit": [(plain(e.subject.removeprefix("order:")), e.action, row(e.details)) for e in audit],
    }


def _outcome(outcome: FillOutcome) -> tuple[Any, ...]:
    return (
        outcome.order.client_order_id, outcome.order.status, outcome.order.filled_quantity,
        outcome.order.avg_fill_price, outcome.duplicate, outcome.late, outcome.position.quantity,
        outcome.position.avg_cost, outcome.position.realised_pnl, outcome.cash,
        tuple(o.client_order_id[32:] for o in outcome.created),  # <parent id>-tp, -sl
        tuple(o.client_order_id for o in outcome.cancelled),
    )  # fmt: skip


FIRST = [("A", 4.0, 100.0), ("B", 10.0, 50.0), ("F", 10.0, 20.0), ("C", 10.0, 30.0), ("A", 6.0, 101.0),
         ("D", 10.0, 40.0), ("E", 5.0, 60.0)]  # fmt: skip
"""The first bar's fills: a partial fill, a bracket parent, the same symbol twice."""


def _run(oms: OrderManager, prefix: str, *, many: bool) -> list[tuple[Any, ...]]:
    """Submit, accept and fill the same orders one by one or by the list operations; a replayed
    fill; then a closing round. Returns the answers, without ids."""
    account = oms.account
    answers: list[tuple[Any, ...]] = []
    with oms.batch():
        requests = _requests(account, prefix)
        placed = oms.submit_many(requests) if many else [oms.submit(r) for r in requests]
        ids = [o.id for o in placed]
        accepted = oms.accept_many(ids) if many else [oms.accept(i) for i in ids]
    answers += [(o.client_order_id, o.status, o.filled_quantity) for o in (*placed, *accepted)]
    orders = {o.client_order_id: o for o in accepted}

    def book(fills: list[tuple[Fill, str]]) -> list[FillOutcome]:
        with oms.batch():
            return oms.apply_fills(fills) if many else [oms.apply_fill(f, k) for f, k in fills]

    first = _fills(orders, prefix, FIRST)
    answers += [_outcome(o) for o in book(first)]
    # a replayed fill among new ones: reported as a duplicate, booked once
    answers += [
        _outcome(o) for o in book([first[1], *_fills(orders, prefix, [("E", 5.0, 61.0)], start=len(first))])
    ]
    with oms.batch():
        sells = [_request(account, f"{prefix}x{s}", s, Side.SELL, 10.0) for s in SYMBOLS[:5]]
        placed = oms.submit_many(sells) if many else [oms.submit(r) for r in sells]
        accepted = oms.accept_many([o.id for o in placed]) if many else [oms.accept(o.id) for o in placed]
    orders = {o.client_order_id: o for o in accepted}
    answers += [
        _outcome(o) for o in book(_fills(orders, f"{prefix}x", [(s, 10.0, 55.0) for s in SYMBOLS[:5]]))
    ]
    return answers


def _counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """The calls of ``OrderManager.<name>`` from now on (each call's first argument)."""
    calls: list[Any] = []
    method = getattr(OrderManager, name)

    def spy(self: OrderManager, first: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(first)
        return method(self, first, *args, **kwargs)

    monkeypatch.setattr(OrderManager, name, spy)
    return calls


def test_the_list_operations_write_the_rows_and_answers_of_one_by_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = OrderManager(engine, "single", initial_cash=100_000.0)
    many = OrderManager(engine, "many", initial_cash=100_000.0)
    answered_single = _run(single, "c", many=False)
    calls = {name: _counted(monkeypatch, name) for name in ("submit", "accept", "apply_fill")}
    answered_many = _run(many, "c", many=True)
    # the groups took every plain case: one by one only the bracket parent's fill, the replay and
    # the fill left alone after it (a group of one)
    assert {name: len(found) for name, found in calls.items()} == {"submit": 0, "accept": 0, "apply_fill": 3}
    assert answered_many == answered_single
    assert _book(engine, "many") == _book(engine, "single")
    # the bracket filled: its two children are open in both; five positions flat, F held
    book = _book(engine, "many")
    assert sum(1 for o in book["orders"] if o["parent_id"] == "cF") == 2
    assert {p["symbol"]: p["quantity"] for p in book["positions"]} == {s: 0.0 for s in SYMBOLS[:5]} | {
        "F": 10.0
    }
    assert len(book["fills"]) == 7 + 1 + 5  # the replay booked nothing
    # the in-memory views are a restart's
    for oms in (single, many):
        restarted = OrderManager(engine, oms.account)
        assert restarted.cash() == pytest.approx(oms.cash(), abs=1e-9)
        assert restarted.positions() == oms.positions()
        assert restarted.open_orders() == oms.open_orders()


def test_a_client_order_id_stored_by_another_process_answers_as_submit_does(engine: Engine) -> None:
    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    other = OrderManager(engine, "paper")  # another process on the same account
    stored = other.submit(_request("paper", "c1", "B"))
    placed = oms.submit_many([_request("paper", f"c{i}", s) for i, s in enumerate("ABC")])
    assert [o.client_order_id for o in placed] == ["c0", "c1", "c2"]
    assert placed[1] == stored  # the stored order, not a second one
    with engine.connect() as conn:
        assert len(list_orders(conn, "paper")) == 3
        created = [e for e in list_audit(conn, action="order.created")]
    assert len(created) == 3


def test_an_order_moved_by_another_process_is_judged_on_its_row(engine: Engine) -> None:
    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    placed = oms.submit_many([_request("paper", f"c{i}", s) for i, s in enumerate("ABC")])
    other = OrderManager(engine, "paper")
    other.reject(placed[1].id, "broker", "closed")  # oms still holds it as submitted
    with pytest.raises(IllegalTransition):
        oms.accept_many([o.id for o in placed])
    fresh = OrderManager(engine, "paper")  # all or nothing: the other two are not accepted either
    assert [o.status for o in fresh.open_orders()] == [OrderStatus.SUBMITTED, OrderStatus.SUBMITTED]
    accepted = oms.accept_many([placed[0].id, placed[2].id])
    assert [o.status for o in accepted] == [OrderStatus.ACCEPTED] * 2

    # a fill booked by the other process moved an order's row and the position: the group is
    # undone and each fill is booked on the stored rows (positions stay the sum of the fills)
    other.recover()
    other.apply_fill(Fill(placed[0].id, "A", Side.BUY, 4.0, 10.0, 0.0, TS), "other-1")
    outcomes = oms.apply_fills([
        (Fill(placed[0].id, "A", Side.BUY, 6.0, 11.0, 0.0, TS), "f-a"),
        (Fill(placed[2].id, "C", Side.BUY, 10.0, 12.0, 0.0, TS), "f-c"),
    ])  # fmt: skip
    assert [o.order.status for o in outcomes] == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert outcomes[0].order.filled_quantity == 10.0 and outcomes[0].position.quantity == 10.0
    with engine.connect() as conn:
        assert {p.symbol: p.quantity for p in list_positions(conn, "paper")} == {"A": 10.0, "C": 10.0}
        assert len(list_fills(conn, "paper")) == 3
        cash = get_account(conn, "paper")
    assert cash is not None and cash.cash == pytest.approx(100_000.0 - 40.0 - 66.0 - 120.0)


def test_a_group_rolled_back_with_its_batch_leaves_nothing(engine: Engine) -> None:
    """The group's savepoint opens the batch's transaction on SQLite when nothing was written in
    it yet: releasing the savepoint must not commit it."""
    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    placed = oms.submit_many([_request("paper", f"c{i}", s) for i, s in enumerate("AB")])
    with pytest.raises(RuntimeError, match="after the group"), oms.batch():
        oms.accept_many([o.id for o in placed])
        raise RuntimeError("after the group")
    fresh = OrderManager(engine, "paper")
    assert [o.status for o in fresh.open_orders()] == [OrderStatus.SUBMITTED] * 2
    with engine.connect() as conn:
        assert [e.details["to"] for e in list_audit(conn, action="order.transition")] == ["submitted"] * 2


def test_a_stale_group_writes_nothing_and_says_so(engine: Engine) -> None:
    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    placed = oms.submit_many([_request("paper", f"c{i}", s) for i, s in enumerate("ABC")])
    OrderManager(engine, "paper").reject(placed[2].id, "broker", "closed")
    with engine.begin() as conn:
        records = list_orders(conn, "paper")
        stale = [
            r if r.id != placed[2].id else r.__class__(**{**vars(r), "status": "submitted"}) for r in records
        ]
        assert transition_orders(conn, stale, "accepted", actor="test") is None
        # the first two rows matched and were undone with the group
        assert [r.status for r in list_orders(conn, "paper")] == ["submitted", "submitted", "rejected"]
        moved = transition_orders(conn, records[:2], "accepted", actor="test")
    assert moved is not None and [r.status for r in moved] == ["accepted", "accepted"]


def test_the_list_operations_refuse_what_one_by_one_refuses_and_write_nothing(engine: Engine) -> None:
    from execution.oms import TradingHalted, UnknownOrder

    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    placed = oms.submit_many([_request("paper", f"c{i}", s) for i, s in enumerate("AB")])
    accepted = oms.accept_many([o.id for o in placed])
    with pytest.raises(UnknownOrder):
        oms.accept_many(["nope"])
    overfill = [
        (Fill(accepted[0].id, "A", Side.BUY, 4.0, 10.0, 0.0, TS), "f-a"),
        (Fill(accepted[1].id, "B", Side.BUY, 11.0, 10.0, 0.0, TS), "f-b"),  # 11 of 10
    ]
    with pytest.raises(ValueError, match="exceeds its remaining"):
        oms.apply_fills(overfill)
    oms.halt("test")
    with pytest.raises(TradingHalted):
        oms.submit_many([_request("paper", f"d{i}", s) for i, s in enumerate("AB")])
    fresh = OrderManager(engine, "paper")  # nothing of the refused calls was written
    assert [o.status for o in fresh.open_orders()] == [OrderStatus.ACCEPTED] * 2
    assert fresh.positions() == {} and fresh.cash() == 100_000.0
    with engine.connect() as conn:
        assert len(list_orders(conn, "paper")) == 2 and list_fills(conn, "paper") == []
