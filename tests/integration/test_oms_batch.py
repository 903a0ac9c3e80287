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
from storage import _driver, list_audit
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


def _filled_orders(oms: OrderManager, prefix: str, n: int) -> list[Order]:
    orders = [oms.submit(OrderRequest(f"{prefix}{i}", oms.account, "SPY", Side.BUY, 10.0)) for i in range(n)]
    return [oms.accept(order.id) for order in orders]


def test_a_batch_writes_the_accounts_cash_once_and_reports_it_per_fill(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's fills leave the account row to the batch, which writes it once before it
    commits: each fill still reports the cash after it, the row ends as one write per fill would
    have left it (the same float sums, in order), and a replayed fill reports the cash as stored."""
    single = OrderManager(engine, "one-by-one", initial_cash=1_000.0)
    expected = [
        single.apply_fill(Fill(o.client_order_id, "SPY", Side.BUY, 10.0, 5.0 + k / 3, 0.1, TS), f"x-{k}").cash
        for k, o in enumerate(_filled_orders(single, "s", 3))
    ]
    oms = OrderManager(engine, "batched-cash", initial_cash=1_000.0)
    orders = _filled_orders(oms, "b", 3)
    statements: list[str] = []
    run = _driver.run

    def capture(conn: Any, stmt: Any, params: Any) -> Any:  # the OMS's statements run on the driver
        statements.append(str(stmt))
        return run(conn, stmt, params)

    monkeypatch.setattr(_driver, "run", capture)
    with oms.batch():
        outcomes = [
            oms.apply_fill(Fill(o.client_order_id, "SPY", Side.BUY, 10.0, 5.0 + k / 3, 0.1, TS), f"x-{k}")
            for k, o in enumerate(orders)
        ]
        assert oms.cash() == 1_000.0  # the view moves after the commit
    monkeypatch.undo()
    assert [o.cash for o in outcomes] == expected  # exactly: the same sums in the same order
    with engine.connect() as conn:
        stored = get_account(conn, "batched-cash")
    assert stored is not None and stored.cash == oms.cash() == expected[-1]
    assert len([s for s in statements if s.startswith("UPDATE accounts")]) == 1, statements

    (late,) = _filled_orders(oms, "c", 1)
    with oms.batch():  # a replayed fill after a new one: the cash as stored, the new fill's included
        new = oms.apply_fill(Fill(late.client_order_id, "SPY", Side.BUY, 10.0, 4.0, 0.1, TS), "x-3")
        replay = oms.apply_fill(Fill(orders[0].client_order_id, "SPY", Side.BUY, 10.0, 5.0, 0.1, TS), "x-0")
    assert replay.duplicate and replay.cash == new.cash == oms.cash() == expected[-1] - 40.1


def test_a_batch_adds_its_fills_to_cash_another_writer_moved(engine: Engine) -> None:
    """Two managers of one account (two processes, say): the second books fills in a batch from a
    cash the first has moved since; the batch finds the row changed and adds its flows to it."""
    first = OrderManager(engine, "shared", initial_cash=1_000.0)
    second = OrderManager(engine, "shared")
    (mine,) = _filled_orders(second, "m", 1)
    (theirs,) = _filled_orders(first, "t", 1)
    moved = first.apply_fill(Fill(theirs.client_order_id, "SPY", Side.BUY, 10.0, 7.0, 0.5, TS), "t-1").cash
    assert second.cash() == 1_000.0  # it has not seen the other's fill
    with second.batch():
        outcome = second.apply_fill(Fill(mine.client_order_id, "SPY", Side.BUY, 10.0, 5.0, 0.1, TS), "m-1")
    assert outcome.cash == 1_000.0 - 50.1  # from the cash it knew
    with engine.connect() as conn:
        stored = get_account(conn, "shared")
    assert stored is not None and stored.cash == pytest.approx(moved - 50.1)
    assert second.cash() == stored.cash  # the view takes the stored cash
