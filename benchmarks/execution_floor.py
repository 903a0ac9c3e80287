"""The paper desk's floor: the same rows and statements as FKS's desk, driven by thin Python.

Run ``python -m benchmarks.execution_floor`` (options ``--orders N``, default 1,000,
``--repeats K``, default 3: each side's best of K, and ``--no-postgres``). Prints one JSON
object: the floor's time with and without the risk check and with the objects FKS's OMS keeps
per change (``floor_objects``: :class:`_Objects`, what a leaner OMS keeping its object model
would cost), FKS's desk
(:func:`benchmarks.execution.run_fks`) and backtrader's broker
(:func:`benchmarks.execution.best_backtrader`, the anchor) on the same bars and orders, measured
in the same run, and each one's ratio to backtrader (orders/s).

A measurement, not a way to trade: it answers whether the desk's gap to backtrader (see
``docs/execution-performance.md``) comes from what FKS persists or from how. The floor runs the
``desk`` workload of :mod:`benchmarks.execution` (10 symbols, every symbol trading every bar) on a
migrated SQLite file (:func:`storage.db.open_store`, with the OMS's ``wal_autocheckpoint``) and,
per order, sends the statements FKS's OMS sends, compiled by :mod:`storage._driver` from
:mod:`storage.execution`'s own statement objects: the order's insert if absent (as
``submitted``), the compare-and-sets on status and filled quantity to ``accepted`` and to
``filled``, the fill's insert if absent returning its id, the position's insert if absent or its
compare-and-set (figures from :func:`storage.execution.position_after`); per bar the account's
cash once (compare-and-set), the equity mark and two commits (the bar's fills and mark; its
orders, their sends and the broker's acks); five ``audit_log`` rows per order with the details FKS
writes, made by :func:`storage.audit.audit_row` and written by
:func:`storage.audit.write_audit_rows` before each commit. It calls the real
:func:`execution.risk.check` per order (``floor_no_risk``: a run without it) and the real
:class:`~execution.broker.PaperBroker`. It leaves out what FKS's layers add on top: the
OMS's in-memory view (it keeps a dict of tuples), the value checks, the compare-and-set's
fallback to a read (it asserts that one row changed), the idempotency answers, and the bracket,
FX and late-fill branches (none occurs in this workload). Checked in the output: each run's rows
per table, ``audit_log`` rows per action and the keys of their details equal FKS's (``same_rows``),
and its final cash equals its paper broker's, FKS's and backtrader's within 1e-6 (``agree``).

On PostgreSQL (``TEST_POSTGRES_URL``, or a throwaway server from ``.ci/postgres.sh``;
``--no-postgres`` skips it) the same runs go to a fresh database each, the output's
``postgresql`` object giving their figures, ratios and checks: there the floor sends each
transaction's statements batched as psycopg allows (see :class:`_Floor`), the least that writing
these rows through a server costs.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.execution import (
    ACCOUNT,
    CASH,
    SYMBOLS,
    TOLERANCE,
    Plan,
    bad_options,
    bar_columns,
    best_backtrader,
    build_bars,
    desk_plan,
    desk_request,
    make_bars,
    paper_broker,
    postgres_database,
    postgres_server,
    run_fks,
    signal_model,
)
from storage._time import now_ms

ACTOR = "oms"

_KEYS = {  # each statement's parameters, in the order the compiled SQL binds them (checked)
    "insert_order": (
        "id", "client_order_id", "account", "symbol", "side", "type", "time_in_force", "quantity",
        "filled_quantity", "avg_fill_price", "limit_price", "stop_price", "take_profit", "stop_loss",
        "parent_id", "oco_group", "status", "reject_code", "reject_reason", "model", "model_version",
        "confidence", "decided_at", "created_at", "updated_at",
    ),
    "accept": ("status", "updated_at", "_id", "_status", "_filled_quantity"),
    "fill_order": ("filled_quantity", "avg_fill_price", "status", "updated_at", "_id", "_status",
                   "_filled_quantity"),
    "insert_fill": ("order_id", "account", "symbol", "side", "quantity", "price", "fee", "ts",
                    "broker_fill_id", "recorded_at", "fx_rate"),
    "insert_position": ("account", "symbol", "quantity", "avg_cost", "realised_pnl", "updated_at",
                        "avg_cost_base", "realised_pnl_base"),
    "update_position": ("quantity", "avg_cost", "realised_pnl", "updated_at", "avg_cost_base",
                        "realised_pnl_base", "_account", "_symbol", "_was_quantity", "_was_avg_cost",
                        "_was_realised_pnl", "_was_avg_cost_base", "_was_realised_pnl_base"),
    "cash": ("cash", "_name", "_was"),
    "mark": ("account", "ts", "cash", "market_value", "equity"),
}  # fmt: skip


def statements(conn: Any) -> dict[str, str]:
    """The SQL of FKS's OMS statements on ``conn``'s dialect, by name (see :data:`_KEYS`).

    Raises:
        RuntimeError: a statement binds other parameters, or in another order, than :data:`_KEYS`
            says (the schema changed: this benchmark must follow it).
    """
    from storage import _driver
    from storage import execution as store

    dialect = conn.dialect.name
    objects = {
        "insert_order": store._INSERT_ORDER_IF_ABSENT[dialect],
        "accept": store._COMPARE_AND_SET,
        "fill_order": store._COMPARE_AND_SET,
        "insert_fill": store._INSERT_FILL_IF_ABSENT_RETURNING[dialect],
        "insert_position": store._INSERT_POSITION_IF_ABSENT[dialect],
        "update_position": store._UPDATE_KNOWN_POSITION,
        "cash": store._SET_CASH,
        "mark": store._UPSERT_EQUITY[dialect],
    }
    found = {}
    for name, stmt in objects.items():
        compiled = _driver._compiled(conn, stmt, tuple(sorted(_KEYS[name])))
        bound = tuple(p[0] for p in compiled.plan)
        if bound != _KEYS[name] or any(p[2] is not _driver._MISSING for p in compiled.plan):
            raise RuntimeError(
                f"{name} binds {bound}, not {_KEYS[name]}: update benchmarks/execution_floor.py"
            )
        sql = compiled.sql
        if not compiled.positional:  # PostgreSQL's named parameters, as positional ones in _KEYS's order
            if tuple(re.findall(r"%\((\w+)\)s", sql)) != _KEYS[name]:
                raise RuntimeError(f"{name}'s SQL names its parameters out of order: update {__name__}")
            sql = re.sub(r"%\((\w+)\)s", "%s", sql)
        found[name] = sql
    return found


def row_counts(engine: Any) -> dict[str, Any]:
    """Rows per table the desk writes, ``audit_log``'s rows per action and the sets of keys their
    details carry per action: the floor must write what FKS writes."""
    from sqlalchemy import text

    tables = ("orders", "fills", "positions", "equity_history", "accounts")
    with engine.connect() as conn:
        counts: dict[str, Any] = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables
        }
        audit = conn.execute(text("SELECT action, details FROM audit_log")).all()
    actions: dict[str, int] = {}
    keys: dict[str, set[tuple[str, ...]]] = {}
    for action, details in audit:
        actions[action] = actions.get(action, 0) + 1
        found = details if isinstance(details, dict) else json.loads(details)  # PostgreSQL: parsed
        keys.setdefault(action, set()).add(tuple(sorted(found)))
    counts["audit_log"] = dict(sorted(actions.items()))
    counts["audit_keys"] = {action: sorted(found) for action, found in sorted(keys.items())}
    return counts


def _transition(order_id: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    """An ``order.transition`` audit row, with the details FKS's OMS writes."""
    from storage.audit import audit_row

    details = {"account": ACCOUNT, "from": start, "to": end, **extra}
    return audit_row(actor=ACTOR, action="order.transition", subject=f"order:{order_id}", details=details)


class _Objects:
    """What FKS's OMS keeps per change on top of the rows (the ``floor_objects`` runs): the manager's lock
    held for the change, the transition's legality check, the store's value checks of a new
    order, each order as an ``OrderRecord`` (a new one per change) and its ``Order`` view, and a
    fill's ``FillRecord``, ``Position`` and ``FillResult``; built the way the OMS builds them
    (fields set at once). An estimate of a leaner OMS that keeps its object model."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.RLock()
        self.records: dict[str, Any] = {}  # client order id -> OrderRecord
        self.views: dict[str, Any] = {}  # client order id -> Order

    def created(self, order_id: str, request: Any, at: int) -> None:
        from execution.oms import _order
        from execution.orders import OrderStatus, check_transition
        from storage import execution as store

        with self.lock:
            check_transition(order_id, OrderStatus.NEW, OrderStatus.SUBMITTED)
            store._text("order id", order_id, 64)
            store._text("client_order_id", request.client_order_id, 64)
            store._text("symbol", request.symbol, 32)
            for name, value, allowed in (("side", request.side.value, store.SIDES),
                                         ("type", request.type.value, store.ORDER_TYPES),
                                         ("time_in_force", request.time_in_force.value, store.TIMES_IN_FORCE),
                                         ("status", "submitted", store.ORDER_STATUSES)):  # fmt: skip
                store._one_of(name, value, allowed)
            store._positive("quantity", request.quantity)
            now = store._stamp(at)
            record = store._built(
                store.OrderRecord, id=order_id, client_order_id=request.client_order_id, account=ACCOUNT,
                symbol=request.symbol, side=request.side.value, type=request.type.value,
                time_in_force=request.time_in_force.value, quantity=request.quantity, status="submitted",
                created_at=now, updated_at=now, filled_quantity=0.0, avg_fill_price=None, limit_price=None,
                stop_price=None, take_profit=None, stop_loss=None, parent_id=None, oco_group=None,
                reject_code=None, reject_reason=None, model=request.model,
                model_version=request.model_version, confidence=request.confidence,
                decided_at=request.decided_at,
            )  # fmt: skip
            self.records[request.client_order_id] = record
            self.views[request.client_order_id] = _order(record)

    def moved(self, client_id: str, end: str, at: int, **values: Any) -> Any:
        from execution.oms import _order
        from execution.orders import OrderStatus, check_transition
        from storage import execution as store

        with self.lock:
            record = self.records[client_id]
            check_transition(record.id, OrderStatus(record.status), OrderStatus(end))
            record = store._with(record, {"status": end, **values, "updated_at": store._stamp(at)})
            self.records[client_id] = record
            self.views[client_id] = _order(record)
            return record

    def filled(
        self, fill: Any, fill_id: int, at: int, position: tuple[float, float, float], cash: float
    ) -> None:
        from storage import execution as store

        with self.lock:
            record = self.records[fill.order_id]
            if not store.fill_completes(record, fill.quantity):
                raise RuntimeError(f"the floor's fills are whole, {fill.order_id}'s is not")
            order = self.moved(fill.order_id, "filled", at, filled_quantity=fill.quantity,
                               avg_fill_price=fill.price)  # fmt: skip
            recorded = store._stamp(at)
            booked = store._built(
                store.FillRecord, id=fill_id, order_id=record.id, account=ACCOUNT, symbol=record.symbol,
                side=record.side, quantity=fill.quantity, price=fill.price, fee=fill.fee, ts=fill.ts,
                broker_fill_id=fill.broker_fill_id, recorded_at=recorded, fx_rate=1.0,
            )  # fmt: skip
            q, c, r = position
            held = store._built(
                store.Position, account=ACCOUNT, symbol=record.symbol, quantity=q, avg_cost=c, realised_pnl=r,
                updated_at=recorded, avg_cost_base=c, realised_pnl_base=r,
            )  # fmt: skip
            store._built(
                store.FillResult, fill=booked, order=order, position=held, cash=cash, duplicate=False
            )
            del self.records[fill.order_id], self.views[fill.order_id]


class _Floor:
    """The floor's books and writes on one SQLAlchemy connection (each step one transaction,
    written on the driver's cursor as :mod:`storage._driver` does).

    On SQLite each statement runs at once on one cursor and its row count is checked then. On
    PostgreSQL a transaction's statements are queued per statement and sent, each statement's rows
    by one ``executemany``, in one psycopg pipeline (no round trip per row or per statement: the
    fastest form psycopg has for them); their row counts and the fills' ids are read once it has
    synced; then its ``audit_log`` rows by one ``COPY`` and the commit: three round trips per
    transaction, the least these rows allow (an audit row names its fill's id)."""

    _RETURNING = "insert_fill"
    _UNCHECKED = frozenset({"insert_fill", "mark"})  # the fill returns its id; the mark is an upsert

    def __init__(self, conn: Any, sql: dict[str, str], objects: _Objects | None) -> None:
        self.conn, self.sql = conn, sql
        self.pipelined = conn.dialect.name == "postgresql"
        self.broker = paper_broker()
        self.cash = CASH
        self.positions: dict[str, tuple[float, float, float]] = {}  # quantity, avg cost, realised
        self.orders: dict[str, tuple[str, str]] = {}  # client order id -> order id, side
        self.sequence = itertools.count()
        self.placed = 0
        self.objects = objects
        self._cursor: Any = None
        self._queued: dict[str, list[tuple[Any, ...]]] = {}  # PostgreSQL: statement -> its rows
        self._fill_ids: list[int] = []  # the transaction's fills' ids, in the order they were sent

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """The block's statements (queued on PostgreSQL, then sent in one pipeline and their row
        counts checked); the caller writes the audit rows, and the commit follows."""
        self._fill_ids = []
        if not self.pipelined:
            self._cursor = self.conn.connection.dbapi_connection.cursor()
            yield
            self._cursor.close()
            return
        yield
        dbapi = self.conn.connection.dbapi_connection
        sent = []
        with dbapi.pipeline():
            for name, rows in self._queued.items():
                cursor = dbapi.cursor()
                cursor.executemany(self.sql[name], rows, returning=name == self._RETURNING)
                sent.append((name, len(rows), cursor))
        for name, count, cursor in sent:
            if name == self._RETURNING:
                while True:
                    self._fill_ids.append(cursor.fetchone()[0])
                    if not cursor.nextset():
                        break
            assert name in self._UNCHECKED or cursor.rowcount == count, (name, cursor.rowcount, count)
            cursor.close()
        self._queued.clear()

    def _run(self, name: str, args: tuple[Any, ...]) -> None:
        """Execute statement ``name`` (queued on PostgreSQL); a fill's id goes to ``_fill_ids``."""
        if self.pipelined:
            self._queued.setdefault(name, []).append(args)
            return
        cursor = self._cursor
        cursor.execute(self.sql[name], args)
        if name == self._RETURNING:
            self._fill_ids.append(cursor.fetchone()[0])
        else:
            assert name in self._UNCHECKED or cursor.rowcount == 1

    def bar(self, bars: dict[str, Any], ts: pd.Timestamp) -> float:
        """The bar's fills and the mark at ``ts``, in one transaction; the equity."""
        from storage.audit import write_audit_rows

        with self.conn.begin():
            booked = []
            with self._transaction():
                was = self.cash
                for symbol, bar in bars.items():
                    for fill in self.broker.on_bar(symbol, bar):
                        booked.append(self._book(symbol, fill))
                if self.cash != was:
                    self._run("cash", (self.cash, ACCOUNT, was))
                value = sum(q * bars[s].close for s, (q, _, _) in self.positions.items() if q)
                equity = self.cash + value
                self._run("mark", (ACCOUNT, ts.value // 1_000_000, self.cash, value, equity))
            write_audit_rows(self.conn, [row for step in booked for row in self._booked(*step)])
        return equity

    def _book(
        self, symbol: str, fill: Any
    ) -> tuple[int, Any, dict[str, Any], tuple[float, float, float], float]:
        """Send ``fill``'s statements: the place of its id in ``_fill_ids``, the fill, its audit
        details (less the id), the position and the cash after it."""
        from storage.execution import position_after

        order_id, side = self.orders.pop(fill.order_id)
        at, ts_ms = now_ms(), fill.ts.value // 1_000_000
        qty, px, fee, key = fill.quantity, fill.price, fill.fee, fill.broker_fill_id
        slot = len(self._fill_ids) + len(self._queued.get(self._RETURNING, ()))  # its id's place
        self._run("insert_fill", (order_id, ACCOUNT, symbol, side, qty, px, fee, ts_ms, key, at, 1.0))
        self._run("fill_order", (qty, px, "filled", at, order_id, "accepted", 0.0))
        signed = qty if side == "buy" else -qty
        before = self.positions.get(symbol)
        q1, c1, r1 = position_after(*(before or (0.0, 0.0, 0.0)), signed, px)
        if before is None:
            self._run("insert_position", (ACCOUNT, symbol, q1, c1, r1, at, c1, r1))
        else:  # the base figures equal the quote ones (one currency)
            was = (*before, before[1], before[2])
            self._run("update_position", (q1, c1, r1, at, c1, r1, ACCOUNT, symbol, *was))
        self.positions[symbol] = (q1, c1, r1)
        flow = -signed * px - fee
        self.cash += flow
        details = {
            "account": ACCOUNT, "order_id": order_id, "broker_fill_id": key, "symbol": symbol, "side": side,
            "quantity": qty, "price": px, "fee": fee, "ts": ts_ms, "fx_rate": 1.0, "cash_flow": flow,
            "position": q1, "avg_cost": c1, "realised_pnl": r1, "avg_cost_base": c1, "realised_pnl_base": r1,
            "late": False, "at": at,
        }  # fmt: skip
        return slot, fill, details, (q1, c1, r1), self.cash

    def _booked(
        self, slot: int, fill: Any, details: dict[str, Any], position: tuple[float, float, float], cash: float
    ) -> list[dict[str, Any]]:
        """A booked fill's audit rows (and its objects), once its id is known."""
        from storage.audit import audit_row

        fill_id = self._fill_ids[slot]
        order_id, at = details.pop("order_id"), details.pop("at")
        if self.objects is not None:
            self.objects.filled(fill, fill_id, at, position, cash)
        subject = f"order:{order_id}"
        return [
            _transition(order_id, "accepted", "filled", broker_fill_id=fill.broker_fill_id),
            audit_row(
                actor=ACTOR, action="order.fill", subject=subject, details={"fill_id": fill_id, **details}
            ),
        ]

    def submit(self, requests: list[Any], decided: pd.Timestamp) -> None:
        """Record ``requests`` as submitted, send them and record the acks, in one transaction."""
        from storage.audit import audit_row, write_audit_rows

        with self.conn.begin():
            audit: list[dict[str, Any]] = []
            with self._transaction():
                decided_ms = decided.value // 1_000_000
                for r in requests:
                    at = now_ms()
                    order_id = f"{at:012x}{next(self.sequence):08x}{0:012x}"
                    side = r.side.value
                    self._run("insert_order", (
                        order_id, r.client_order_id, ACCOUNT, r.symbol, side, "market", "gtc", r.quantity,
                        0.0, None, None, None, None, None, None, None, "submitted", None, None, r.model,
                        r.model_version, r.confidence, decided_ms, at, at,
                    ))  # fmt: skip
                    if self.objects is not None:
                        self.objects.created(order_id, r, at)
                    details = {
                        "account": ACCOUNT, "client_order_id": r.client_order_id, "to": "new",
                        "symbol": r.symbol, "side": side, "type": "market", "time_in_force": "gtc",
                        "quantity": r.quantity, "filled_quantity": 0.0, "model": r.model,
                        "model_version": r.model_version, "confidence": r.confidence,
                        "decided_at": decided_ms, "created_at": at, "updated_at": at,
                    }  # fmt: skip
                    audit.append(audit_row(actor=ACTOR, action="order.created", subject=f"order:{order_id}",
                                           details=details))  # fmt: skip
                    audit.append(_transition(order_id, "new", "submitted"))
                    self.orders[r.client_order_id] = (order_id, side)
                acks = [(r, self.broker.submit(r, decided_at=decided)) for r in requests]
                for r, ack in acks:
                    if not ack.accepted:
                        raise RuntimeError(f"the paper broker rejected {r.client_order_id}: {ack.reason}")
                    order_id = self.orders[r.client_order_id][0]
                    at = now_ms()
                    if self.objects is not None:
                        self.objects.moved(r.client_order_id, "accepted", at)
                    self._run("accept", ("accepted", at, order_id, "submitted", 0.0))
                    audit.append(_transition(order_id, "submitted", "accepted"))
                    self.placed += 1
            write_audit_rows(self.conn, audit)


def run_floor(
    engine: Any, frames: dict[str, pd.DataFrame], plan: Plan, *, risk: bool, objects: bool = False
) -> dict[str, Any]:
    """The desk workload at the floor on ``engine`` (a new, migrated store: a SQLite file or a
    PostgreSQL database; ``objects``: with :class:`_Objects`): timing, final cash and rows."""
    from config.risk import load_risk_config
    from execution.oms import WAL_AUTOCHECKPOINT, OrderManager
    from execution.risk import RiskState, check
    from market.bars import Timeframe
    from market.calendars import get_calendar

    OrderManager(engine, ACCOUNT, initial_cash=CASH)  # opens the account as the desk does
    config = load_risk_config().model_copy(update={"account": ACCOUNT})
    timeframe, calendar = Timeframe.parse("1d"), get_calendar("24/7")
    index = next(iter(frames.values())).index
    columns = bar_columns(frames)
    day = pd.Timedelta(days=1)
    with engine.connect() as conn:
        floor = _Floor(conn, statements(conn), _Objects() if objects else None)
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        conn.commit()
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        bars = build_bars(columns, index)
        last_bar_ts: dict[str, pd.Timestamp] = {}
        start_of_day = peak = CASH
        for i, ts in enumerate(index):
            now = ts + day
            today = {s: bars[s][i] for s in SYMBOLS}
            equity = floor.bar(today, now)
            last_bar_ts.update(dict.fromkeys(SYMBOLS, ts))
            if plan[i]:
                version, registered = signal_model(index, i)
                state = RiskState(
                    now=now, cash=floor.cash, start_of_day_equity=start_of_day, peak_equity=max(peak, equity),
                    positions={s: p[0] for s, p in floor.positions.items()},
                    prices={s: b.close for s, b in today.items()}, open_orders=(), recent_order_times=(),
                    last_bar_ts=last_bar_ts, model_registered_at=registered,
                )  # fmt: skip
                requests = []
                for s, side in plan[i]:
                    request = desk_request(f"floor-{i}-{s}", s, side, version, ts)
                    if risk:
                        decision = check(request, state, config, timeframe=timeframe, calendar=calendar)
                        if not decision.accepted:
                            raise RuntimeError(
                                f"order {request.client_order_id} was refused: {decision.reason}"
                            )
                        state = state.with_order(request.client_order_id, request)
                    requests.append(request)
                floor.submit(requests, ts)
            start_of_day, peak = equity, max(peak, equity)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    rows = row_counts(engine)
    cash, broker_cash = floor.cash, floor.broker.account().cash
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "orders": floor.placed, "cash": cash,
            "broker_cash": broker_cash, "rows": rows}  # fmt: skip


_KINDS = ("floor", "floor_objects", "floor_no_risk", "fks")
"""The runs per store: the floor (with the risk check, with the OMS's objects, without risk) and
FKS's desk."""


def _run(kind: str, engine: Any, frames: dict[str, pd.DataFrame], plan: Plan, tag: str) -> dict[str, Any]:
    """One run of ``kind`` (see :data:`_KINDS`) on ``engine``, a new store."""
    if kind != "fks":
        return run_floor(engine, frames, plan, risk=kind != "floor_no_risk", objects=kind == "floor_objects")
    gc.collect()
    fks = run_fks(engine, frames, plan, tag)
    return {"seconds": fks["seconds"], "cpu_seconds": fks["cpu_seconds"], "orders": fks["orders"],
            "cash": fks["oms_cash"], "rows": row_counts(engine)}  # fmt: skip


def store_runs(
    store: Callable[[str], AbstractContextManager[Any]],
    frames: dict[str, pd.DataFrame],
    plan: Plan,
    repeats: int,
) -> dict[str, list[dict[str, Any]]]:
    """Each of :data:`_KINDS` ``repeats`` times, each run on a new store made by ``store(name)``
    (a context manager giving a migrated engine), after an untimed warm-up floor run."""
    with store("warm") as engine:
        run_floor(engine, frames, plan, risk=True)  # imports and caches, untimed
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in _KINDS}
    for k in range(repeats):
        for kind in _KINDS:
            with store(f"{kind}{k}") as engine:
                runs[kind].append(_run(kind, engine, frames, plan, f"{kind}{k}"))
    return runs


def summary(runs: dict[str, list[dict[str, Any]]], anchor: dict[str, Any]) -> dict[str, Any]:
    """Each kind's best run, its ratio to backtrader's (``anchor``) and the agreement of the
    rows and books."""
    out: dict[str, Any] = {}
    for name, found in runs.items():
        best = min(found, key=lambda r: r["seconds"])
        out[name] = {
            "s": round(best["seconds"], 4),
            "s_range": [
                round(min(r["seconds"] for r in found), 4),
                round(max(r["seconds"] for r in found), 4),
            ],
            "cpu_s": round(min(r["cpu_seconds"] for r in found), 4),
            "orders": best["orders"],
            "orders_per_s": round(best["orders"] / best["seconds"], 1),
        }
    out["ratio_to_backtrader"] = {n: round(anchor["seconds"] / out[n]["s"], 4) for n in runs}
    cashes = [r["cash"] for found in runs.values() for r in found] + [r["broker_cash"] for r in runs["floor"]]
    rows = {name: found[0]["rows"] for name, found in runs.items()}
    out["rows"] = rows
    same_rows = all(r["rows"] == rows["fks"] for found in runs.values() for r in found)
    out["agreement"] = {
        "floor_cash": runs["floor"][0]["cash"],
        "fks_cash": runs["fks"][0]["cash"],
        "backtrader_cash": anchor["cash"],
        "max_diff": max(abs(c - anchor["cash"]) for c in cashes),
        "tolerance": TOLERANCE,
        "same_rows": same_rows,
        "agree": same_rows
        and all(abs(c - anchor["cash"]) <= TOLERANCE for c in cashes)
        and all(r["orders"] == anchor["orders"] for found in runs.values() for r in found),
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the floor, FKS's desk and backtrader; print one JSON object (also returned)."""
    from storage.db import open_store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=1_000, help=f"a positive multiple of {len(SYMBOLS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (at least 1)")
    parser.add_argument("--no-postgres", action="store_true", help="the SQLite file only")
    args = parser.parse_args(argv)
    why = bad_options(args.orders, args.repeats)
    if why:
        parser.error(why)
    bars = args.orders // len(SYMBOLS) + 1
    frames = make_bars(bars)
    plan = desk_plan(bars)
    with tempfile.TemporaryDirectory(prefix="fks-floor-") as folder:

        @contextmanager
        def sqlite_file(name: str) -> Iterator[Any]:
            engine = open_store(f"sqlite:///{Path(folder) / name}.db")
            yield engine
            engine.dispose()  # (on an error the process ends anyway)

        runs = store_runs(sqlite_file, frames, plan, args.repeats)
    postgres: dict[str, list[dict[str, Any]]] | None = None
    with postgres_server(not args.no_postgres) as (admin_url, source):
        if admin_url is not None:
            url = admin_url
            postgres = store_runs(lambda _name: postgres_database(url), frames, plan, args.repeats)
    anchor = best_backtrader(frames, plan, args.repeats)
    out: dict[str, Any] = {"orders": args.orders, "symbols": len(SYMBOLS), "store": "sqlite_file"}
    out.update(summary(runs, anchor))
    out["backtrader"] = {"s": round(anchor["seconds"], 4), "mode": anchor["mode"], "orders": anchor["orders"],
                         "orders_per_s": round(anchor["orders"] / anchor["seconds"], 1)}  # fmt: skip
    out["postgresql"] = None if postgres is None else summary(postgres, anchor)
    out["postgresql_source"] = source
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
