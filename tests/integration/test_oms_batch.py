"""``OrderManager.batch``: several changes in one transaction, each still persisted with its audit
rows (the same rows and history as one transaction each), all or nothing, the in-memory view moved
only after the commit. On SQLite and (with TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, event

from execution.oms import Order, OrderManager, TradingHalted
from execution.orders import Fill, OrderRequest, OrderStatus, Side
from storage import list_audit
from storage.execution import get_account, list_fills, list_orders

TS = pd.Timestamp("2024-01-02", tz="UTC")


def _requests(account: str, n: int) -> list[OrderRequest]:
    return [OrderRequest(f"c{i}", account, "SPY", Side.BUY, 10.0) for i in range(n)]


def _history(engine: Engine, account: str) -> list[tuple[str, str | None, str | None]]:
    """Each of ``account``'s audit rows as (action, from, to), orders by client id."""
    with engine.connect() as conn:
        names = {o.id: o.client_order_id for o in list_orders(conn, account)}
        rows = list_audit(conn)
    return [
        (f"{names[e.subject.removeprefix('order:')]}:{e.action}", e.details.get("from"), e.details.get("to"))
        for e in rows
        if e.subject.removeprefix("order:") in names
    ]


def test_a_batch_commits_once_and_writes_what_single_changes_write(engine: Engine) -> None:
    single = OrderManager(engine, "single", initial_cash=1_000.0)
    for request in _requests("single", 3):
        order = single.submit(request)
        single.accept(order.id)
        single.apply_fill(Fill(order.client_order_id, "SPY", Side.BUY, 10.0, 5.0, 0.1, TS), f"s-{order.id}")

    batched = OrderManager(engine, "batched", initial_cash=1_000.0)
    commits: list[Any] = []
    listener = commits.append
    event.listen(engine, "commit", listener)
    try:
        with batched.batch():
            orders = [batched.submit(r) for r in _requests("batched", 3)]
            assert batched.open_orders() == []  # the view moves only after the commit
        assert len(commits) == 1
        assert [o.status for o in batched.open_orders()] == [OrderStatus.SUBMITTED] * 3
        with batched.batch():
            for order in orders:
                batched.accept(order.id)
                batched.apply_fill(
                    Fill(order.client_order_id, "SPY", Side.BUY, 10.0, 5.0, 0.1, TS), f"b-{order.id}"
                )
        assert len(commits) == 2
    finally:
        event.remove(engine, "commit", listener)

    assert batched.open_orders() == [] and batched.cash() == pytest.approx(1_000.0 - 3 * 50.1)
    assert batched.positions()["SPY"].quantity == 30.0

    # the same rows and the same audit history (per order: created new, new -> submitted,
    # submitted -> accepted, accepted -> filled, the fill) as one transaction per change
    def per_order(account: str) -> list[tuple[str, str | None, str | None]]:
        return sorted(_history(engine, account), key=lambda row: row[0].split(":")[0])  # stable

    assert per_order("batched") == per_order("single")
    assert len(_history(engine, "batched")) == 3 * 5
    with engine.connect() as conn:
        assert len(list_fills(conn, "batched")) == 3
        account = get_account(conn, "batched")
    assert account is not None and account.cash == batched.cash()
    restarted = OrderManager(engine, "batched")
    assert restarted.positions() == batched.positions() and restarted.cash() == batched.cash()


def test_an_exception_rolls_back_the_whole_batch_even_if_caught_inside(engine: Engine) -> None:
    oms = OrderManager(engine, "undo", initial_cash=1_000.0)
    first = oms.submit(OrderRequest("keep", "undo", "SPY", Side.BUY, 1.0))

    with pytest.raises(RuntimeError, match="boom"), oms.batch():
        oms.submit(OrderRequest("gone-1", "undo", "SPY", Side.BUY, 1.0))
        oms.accept(first.id)
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert [o.client_order_id for o in list_orders(conn, "undo")] == ["keep"]
    assert oms.order(first.id).status is OrderStatus.SUBMITTED  # the accept was rolled back too

    oms.halt("test")
    with pytest.raises(TradingHalted), oms.batch():
        oms.refuse(OrderRequest("gone-2", "undo", "SPY", Side.BUY, 1.0), "max_position", "too big")
        with contextlib.suppress(TradingHalted):  # caught inside: the batch still ends in it
            oms.submit(OrderRequest("gone-3", "undo", "SPY", Side.BUY, 1.0))
    with engine.connect() as conn:
        assert [o.client_order_id for o in list_orders(conn, "undo")] == ["keep"]
    assert [o.client_order_id for o in oms.open_orders()] == ["keep"]
    assert oms.order_by_client_id("gone-2") is None


def test_a_session_runs_every_transaction_of_its_thread_on_one_connection(engine: Engine) -> None:
    oms = OrderManager(engine, "held", initial_cash=1_000.0)
    checkouts: list[Any] = []
    commits: list[Any] = []

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checkouts.append(threading.get_ident())

    event.listen(engine, "checkout", checkout)
    committed = commits.append  # one bound method, to remove the listener by
    event.listen(engine, "commit", committed)
    try:
        with oms.session():
            with oms.session():  # joins the outer one
                order = oms.submit(OrderRequest("h1", "held", "SPY", Side.BUY, 10.0))
            oms.accept(order.id)
            with oms.batch():
                oms.apply_fill(Fill("h1", "SPY", Side.BUY, 10.0, 5.0, 0.1, TS), "h1-1")
                oms.mark_to_market({"SPY": 6.0}, TS)
            with pytest.raises(RuntimeError, match="boom"), oms.batch():  # rolled back, as ever
                oms.submit(OrderRequest("h2", "held", "SPY", Side.BUY, 1.0))
                raise RuntimeError("boom")
            other: list[Order] = []  # another thread's change takes a connection of its own
            worker = threading.Thread(
                target=lambda: other.append(oms.submit(OrderRequest("h3", "held", "SPY", Side.BUY, 1.0)))
            )
            worker.start()
            worker.join()
            assert len(commits) == 4 and len(checkouts) == 2 and checkouts[0] != checkouts[1]
            oms.accept(other[0].id)  # after the rollback and the thread: still the session's
            oms.cancel(other[0].id)
            assert len(commits) == 6 and len(checkouts) == 2
        assert engine.pool.checkedout() == 0  # the session gave its connection back
        oms.submit(OrderRequest("h4", "held", "SPY", Side.BUY, 1.0))  # after it: from the pool
        assert len(checkouts) == 3
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "commit", committed)

    with engine.connect() as conn:
        stored = {o.client_order_id: o.status for o in list_orders(conn, "held")}
        account = get_account(conn, "held")
    assert stored == {"h1": "filled", "h3": "cancelled", "h4": "submitted"}  # h2 rolled back
    assert account is not None and account.cash == pytest.approx(1_000.0 - 50.1) == oms.cash()
    # h1: created, submitted, accepted, filled, the fill; h3: created, submitted, accepted,
    # cancelled; h4: created, submitted
    assert len(_history(engine, "held")) == 5 + 4 + 2
    assert OrderManager(engine, "held").positions() == oms.positions()
