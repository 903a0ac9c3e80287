"""Corporate actions (table ``corporate_actions``): the splits that providers report, or a person records.

A split changes the basis of a share's price: on its ex-date a 2-for-1 split halves the price and
doubles the volume. Recorded splits tell such a jump from a data error, and back-adjust history
(:func:`market.adjust.apply_splits`)::

    with engine.begin() as conn:
        upsert_corporate_actions(conn, [CorporateAction("AAPL", pd.Timestamp("2020-08-31", tz="UTC"),
                                                        "split", 4.0, "manual")])
    with engine.connect() as conn:
        splits = list_corporate_actions(conn, "AAPL", start="2020-01-01")

A row is keyed by ``(symbol, kind, ex_date)``. Writes are idempotent: rerunning the same actions
changes nothing. A row recorded by hand (``source="manual"``) is a person's correction and wins:
a provider never overwrites it, while a manual action overwrites any row. A provider's action
replaces another provider's only when the ratio differs (the first reporter is kept otherwise).
The caller owns the transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from sqlalchemy import Connection, Table, select, update

from storage._time import from_ms, now_ms, to_ms, utc
from storage.companies import _insert_ignoring_conflicts
from storage.schema import CorporateActionRow

SPLIT = "split"
KINDS: tuple[str, ...] = (SPLIT,)
MANUAL = "manual"
_SYMBOLS_PER_QUERY = 500


@dataclass(frozen=True)
class CorporateAction:
    """One corporate action of ``symbol``.

    ``ex_date`` is a tz-aware UTC timestamp at 00:00 of the first session trading on the new basis
    (a naive or string value is read as UTC). ``kind`` is ``"split"`` (the only kind so far).
    ``ratio`` is new shares per old share: 2.0 for a 2-for-1 split, 4.0 for 4-for-1, 0.1 for a
    1-for-10 reverse split; prices before ``ex_date`` divide by it, volumes multiply by it.
    ``source`` is the provider that reported it (``yahoo``, ``polygon``) or ``manual``.
    ``symbol`` is stored upper-case, as the asset registry spells symbols.

    Raises:
        ValueError: for an empty symbol or source, an ex-date that is not a UTC midnight, an
            unknown kind, or a ratio that is not a positive finite number; the message says what
            to pass instead.
    """

    symbol: str
    ex_date: pd.Timestamp
    kind: str
    ratio: float
    source: str

    def __post_init__(self) -> None:
        symbol = str(self.symbol or "").strip().upper()
        if not symbol or len(symbol) > 32:
            raise ValueError(
                f"corporate action symbol {self.symbol!r} must be 1 to 32 characters (e.g. 'AAPL')"
            )
        ex_date = utc(self.ex_date, f"ex_date of {symbol}")
        if ex_date != ex_date.normalize():
            raise ValueError(
                f"ex_date of {symbol} must be 00:00 UTC of the session date, got {ex_date.isoformat()}; "
                f"pass the date only, e.g. pd.Timestamp('{ex_date:%Y-%m-%d}', tz='UTC')"
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"corporate action kind {self.kind!r} of {symbol} is unknown: use {', '.join(KINDS)}"
            )
        ratio = _ratio(self.ratio, symbol, ex_date)
        source = str(self.source or "").strip()
        if not source or len(source) > 64:
            raise ValueError(
                f"source of the {symbol} {self.kind} of {ex_date:%Y-%m-%d} must name the provider or be "
                f"'{MANUAL}' (1 to 64 characters), got {self.source!r}"
            )
        object.__setattr__(self, "symbol", symbol)
        object.__setattr__(self, "ex_date", ex_date.as_unit("ns"))
        object.__setattr__(self, "ratio", ratio)
        object.__setattr__(self, "source", source)

    @property
    def key(self) -> tuple[str, str, int]:
        """The table's primary key: ``(symbol, kind, ex_date in epoch ms)``."""
        return self.symbol, self.kind, to_ms(self.ex_date)


def _ratio(value: Any, symbol: str, ex_date: pd.Timestamp) -> float:
    """``value`` as a positive finite float, or ValueError saying what a ratio is."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = math.nan
    if isinstance(value, bool) or not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(
            f"ratio of the {symbol} split of {ex_date:%Y-%m-%d} must be a positive number of new shares "
            f"per old share (2.0 for 2-for-1, 0.1 for 1-for-10), got {value!r}"
        )
    return ratio


def _table() -> Table:
    return cast(Table, CorporateActionRow.__table__)


def _replaces(new: CorporateAction, ratio: float, source: str) -> bool:
    """Whether ``new`` should overwrite the stored ``(ratio, source)`` (see the module docstring)."""
    same_ratio = math.isclose(new.ratio, ratio, rel_tol=1e-9)
    if new.source == MANUAL:
        return not (same_ratio and source == MANUAL)
    return source != MANUAL and not same_ratio


def upsert_corporate_actions(conn: Connection, actions: Iterable[CorporateAction]) -> int:
    """Insert new actions and update changed ones; returns how many rows were inserted or changed.

    Actions with the same key collapse to the last one given. Rerunning the same actions
    returns 0 and writes nothing (``recorded_at`` moves only on a real change).

    Raises:
        TypeError: when an item is not a :class:`CorporateAction`.
        NotImplementedError: for a database other than SQLite or PostgreSQL.
    """
    wanted: dict[tuple[str, str, int], CorporateAction] = {}
    for action in actions:
        if not isinstance(action, CorporateAction):
            raise TypeError(f"expected CorporateAction, got {type(action).__name__}: {action!r}")
        wanted[action.key] = action
    if not wanted:
        return 0
    table = _table()
    symbols = sorted({key[0] for key in wanted})
    stored: dict[tuple[str, str, int], tuple[float, str]] = {}
    for i in range(0, len(symbols), _SYMBOLS_PER_QUERY):
        query = select(table.c.symbol, table.c.kind, table.c.ex_date, table.c.ratio, table.c.source).where(
            table.c.symbol.in_(symbols[i : i + _SYMBOLS_PER_QUERY])
        )
        for r in conn.execute(query):
            stored[(r.symbol, r.kind, int(r.ex_date))] = (float(r.ratio), r.source)
    stamp = now_ms()
    new = [
        {
            "symbol": k[0],
            "kind": k[1],
            "ex_date": k[2],
            "ratio": a.ratio,
            "source": a.source,
            "recorded_at": stamp,
        }
        for k, a in wanted.items()
        if k not in stored
    ]
    changed = [(k, a) for k, a in wanted.items() if k in stored and _replaces(a, *stored[k])]
    _insert_ignoring_conflicts(conn, table, new)
    for (symbol, kind, ex_ms), action in changed:
        conn.execute(
            update(table)
            .where(table.c.symbol == symbol, table.c.kind == kind, table.c.ex_date == ex_ms)
            .values(ratio=action.ratio, source=action.source, recorded_at=stamp)
        )
    return len(new) + len(changed)


def list_corporate_actions(
    conn: Connection,
    symbol: str | None = None,
    *,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    kind: str | None = SPLIT,
) -> list[CorporateAction]:
    """Recorded actions sorted by symbol and ex-date.

    ``symbol`` (any case) keeps one symbol; ``start`` (inclusive) and ``end`` (exclusive) bound
    the ex-date (UTC; naive values are UTC); ``kind`` keeps one kind, None every kind.

    Raises:
        ValueError: when ``start`` or ``end`` is not a timestamp.
    """
    table = _table()
    query = select(table.c.symbol, table.c.ex_date, table.c.kind, table.c.ratio, table.c.source)
    if symbol is not None:
        query = query.where(table.c.symbol == symbol.strip().upper())
    if kind is not None:
        query = query.where(table.c.kind == kind)
    if start is not None:
        query = query.where(table.c.ex_date >= to_ms(start, "start"))
    if end is not None:
        query = query.where(table.c.ex_date < to_ms(end, "end"))
    query = query.order_by(table.c.symbol, table.c.ex_date, table.c.kind)
    return [
        CorporateAction(r.symbol, from_ms(r.ex_date), r.kind, float(r.ratio), r.source)
        for r in conn.execute(query)
    ]
