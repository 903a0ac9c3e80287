"""The paper desk's cycles (tables ``desk_cycles``, ``desk_targets``, ``paper_venues``).

A cycle of :mod:`execution.desk` ends with :func:`finish_cycle`: in one transaction it stores
what the cycle decided per symbol, the paper broker's state and the cycle row itself, which is
the account's cursor (:func:`last_cycle`). A cycle killed before that commit left no row: its
orders and fills are in the OMS's tables already (each in its own transaction, keyed for
idempotency), and running the cycle again finds them there and sends nothing twice.

Every function takes a connection; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, delete, func, insert, select, update

from storage._time import from_ms, now_ms, to_ms
from storage.schema import DeskCycleRow, DeskTargetRow, PaperVenueRow


@dataclass(frozen=True)
class Target:
    """One symbol's decision in a cycle: who answered (``model``, ``version``), what it said
    (``forecast`` log return and ``prob_up`` for a forecaster, None for an allocator), the target
    ``weight`` (fraction of the account, signed) and the signed ``quantity`` ordered under
    ``client_order_id`` (0 and None when nothing was ordered)."""

    symbol: str
    model: str
    version: str
    weight: float
    forecast: float | None = None
    prob_up: float | None = None
    quantity: float = 0.0
    client_order_id: str | None = None


@dataclass(frozen=True)
class Cycle:
    """One finished cycle: its decision bar ``ts``, when it finished, the orders it sent and
    refused, and the equity it marked."""

    account: str
    ts: pd.Timestamp
    finished_at: pd.Timestamp
    orders: int
    refusals: int
    equity: float


def last_cycle(conn: Connection, account: str) -> Cycle | None:
    """The account's latest finished cycle (its cursor), or None before the first."""
    row = conn.execute(
        select(DeskCycleRow.__table__)
        .where(DeskCycleRow.account == account)
        .order_by(DeskCycleRow.ts.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    return Cycle(row.account, from_ms(row.ts), from_ms(row.finished_at), row.orders, row.refusals, row.equity)


def recent_cycles(conn: Connection, account: str, limit: int) -> list[Cycle]:
    """The account's last ``limit`` finished cycles, oldest first (empty before the first)."""
    rows = conn.execute(
        select(DeskCycleRow.__table__)
        .where(DeskCycleRow.account == account)
        .order_by(DeskCycleRow.ts.desc())
        .limit(limit)
    ).all()
    return [
        Cycle(r.account, from_ms(r.ts), from_ms(r.finished_at), r.orders, r.refusals, r.equity)
        for r in reversed(rows)
    ]


def count_cycles(conn: Connection, account: str) -> int:
    """How many cycles of the account finished."""
    query = select(func.count()).select_from(DeskCycleRow).where(DeskCycleRow.account == account)
    return int(conn.execute(query).scalar_one())


def targets_at(conn: Connection, account: str, ts: pd.Timestamp) -> dict[str, Target]:
    """The decisions of the account's cycle at ``ts``, per symbol (empty when none)."""
    rows = conn.execute(
        select(DeskTargetRow.__table__).where(DeskTargetRow.account == account, DeskTargetRow.ts == to_ms(ts))
    ).all()
    return {
        r.symbol: Target(
            r.symbol, r.model, r.version, r.weight, r.forecast, r.prob_up, r.quantity, r.client_order_id
        )
        for r in rows
    }


def list_targets(conn: Connection, account: str) -> pd.DataFrame:
    """Every decision of the account, oldest first, as a frame with columns ``ts`` (UTC),
    ``symbol``, ``model``, ``version``, ``forecast``, ``prob_up``, ``weight``, ``quantity``,
    ``client_order_id``."""
    table = DeskTargetRow.__table__
    rows = conn.execute(
        select(table).where(table.c.account == account).order_by(table.c.ts, table.c.symbol)
    ).all()
    columns = [
        "ts",
        "symbol",
        "model",
        "version",
        "forecast",
        "prob_up",
        "weight",
        "quantity",
        "client_order_id",
    ]
    frame = pd.DataFrame([{c: getattr(r, c) for c in columns} for r in rows], columns=columns)
    frame["ts"] = pd.to_datetime(frame["ts"].astype("int64"), unit="ms", utc=True)
    return frame


def load_venue(conn: Connection, account: str) -> tuple[pd.Timestamp, str] | None:
    """The paper broker's saved state of the account: ``(as_of, JSON)``, or None."""
    row = conn.execute(
        select(PaperVenueRow.as_of, PaperVenueRow.state).where(PaperVenueRow.account == account)
    ).one_or_none()
    return None if row is None else (from_ms(row.as_of), row.state)


def finish_cycle(
    conn: Connection,
    account: str,
    ts: pd.Timestamp,
    targets: Iterable[Target],
    *,
    equity: float,
    orders: int,
    refusals: int,
    venue_state: str | None,
) -> Cycle:
    """Record the cycle at decision bar ``ts`` as finished: its targets, the paper broker's
    state (when there is one) and the cycle row, on ``conn`` (commit them together).

    Raises:
        ValueError: the cycle at ``ts`` is recorded already, or ``ts`` is not after the last
            cycle (cycles move forward only).
    """
    ts_ms = to_ms(ts, "ts")
    last = last_cycle(conn, account)
    if last is not None and ts_ms <= to_ms(last.ts):
        raise ValueError(
            f"account {account!r}: the cycle at {from_ms(ts_ms)} is not after the last finished cycle "
            f"({last.ts}); cycles move forward only"
        )
    rows = [
        {
            "account": account,
            "ts": ts_ms,
            "symbol": t.symbol,
            "model": t.model,
            "version": t.version,
            "forecast": t.forecast,
            "prob_up": t.prob_up,
            "weight": t.weight,
            "quantity": t.quantity,
            "client_order_id": t.client_order_id,
        }
        for t in targets
    ]
    conn.execute(delete(DeskTargetRow).where(DeskTargetRow.account == account, DeskTargetRow.ts == ts_ms))
    if rows:
        conn.execute(insert(DeskTargetRow), rows)
    if venue_state is not None:
        where = PaperVenueRow.account == account
        if conn.execute(select(PaperVenueRow.account).where(where)).first() is None:
            conn.execute(insert(PaperVenueRow).values(account=account, as_of=ts_ms, state=venue_state))
        else:
            conn.execute(update(PaperVenueRow).where(where).values(as_of=ts_ms, state=venue_state))
    finished = now_ms()
    conn.execute(
        insert(DeskCycleRow).values(
            account=account, ts=ts_ms, finished_at=finished, orders=orders, refusals=refusals, equity=equity
        )
    )
    return Cycle(account, from_ms(ts_ms), from_ms(finished), orders, refusals, equity)
