"""Bar replacements: a stored bar overwritten with another source's different values.

When a fallback provider wrote bars while the asset's primary was down, those bars are
provisional; when the primary answers again, its values replace them (see
:mod:`ingestion.reconcile`). Each such replacement is kept in ``bar_replacements`` with the
values it replaced, so that nothing a source once delivered is lost silently and ``fks reconcile``
can say what it healed. :func:`replaced_bars` (pure) finds them; :func:`record_replacements`
stores them on the caller's transaction; :func:`list_replacements` reads them back.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import Connection, insert, select

from market.bars import BAR_COLUMNS
from storage._time import now_ms as _now_ms
from storage._time import to_ms as _to_ms
from storage.schema import BarReplacementRow

_PRICES = ("open", "high", "low", "close")

REPLACEMENT_COLUMNS: tuple[str, ...] = (
    "id",
    "symbol",
    "timeframe",
    "ts",
    "old_source",
    "new_source",
    "old_open",
    "old_high",
    "old_low",
    "old_close",
    "old_volume",
    "new_close",
    "max_rel_diff",
    "trigger",
    "batch_id",
    "replaced_at",
)


def replaced_bars(stored: pd.DataFrame, incoming: pd.DataFrame, source: str) -> pd.DataFrame:
    """The stored bars that writing ``incoming`` (from ``source``) would overwrite with different
    values: those of another source whose open, high, low, close or volume differ.

    ``stored`` is :func:`storage.bars.read_bars_with_source`'s frame, ``incoming`` a canonical bar
    frame. Returns the stored rows (with ``source``) plus ``new_close`` and ``max_rel_diff`` (the
    largest ``|new - old| / |old|`` over the prices), indexed by ``ts``.
    """
    shared = stored.index.intersection(incoming.index)
    old = stored.loc[shared]
    new = incoming.loc[shared, list(BAR_COLUMNS)]
    pick = (old["source"] != source).to_numpy(dtype=bool)
    differs = np.zeros(len(shared), dtype=bool)
    for column in BAR_COLUMNS:
        differs |= old[column].to_numpy(dtype="float64") != new[column].to_numpy(dtype="float64")
    old, new = old[pick & differs], new[pick & differs]
    worst = np.zeros(len(old), dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        for column in _PRICES:
            before = old[column].to_numpy(dtype="float64")
            rel = np.abs(new[column].to_numpy(dtype="float64") - before) / np.abs(before)
            worst = np.maximum(worst, np.nan_to_num(rel, nan=0.0, posinf=np.finfo("float64").max))
    return old.assign(new_close=new["close"].to_numpy(dtype="float64"), max_rel_diff=worst)


def record_replacements(
    conn: Connection,
    replaced: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    new_source: str,
    trigger: str,
    batch_id: str | None = None,
    replaced_at: pd.Timestamp | dt.datetime | None = None,
) -> int:
    """Store one ``bar_replacements`` row per row of ``replaced`` (:func:`replaced_bars`' frame) on
    the caller's transaction; returns how many."""
    if not len(replaced):
        return 0
    at = _to_ms(replaced_at, "replaced_at") if replaced_at is not None else _now_ms()
    ms = pd.DatetimeIndex(replaced.index).as_unit("ms").asi8.tolist()
    values = {f"old_{c}": replaced[c].to_numpy(dtype="float64").tolist() for c in BAR_COLUMNS}
    values["new_close"] = replaced["new_close"].to_numpy(dtype="float64").tolist()
    values["max_rel_diff"] = replaced["max_rel_diff"].to_numpy(dtype="float64").tolist()
    sources = [str(v) for v in replaced["source"].tolist()]
    rows = [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "ts": int(t),
            "old_source": sources[i],
            "new_source": new_source,
            **{name: column[i] for name, column in values.items()},
            "trigger": trigger,
            "batch_id": batch_id,
            "replaced_at": at,
        }
        for i, t in enumerate(ms)
    ]
    conn.execute(insert(BarReplacementRow), rows)
    return len(rows)


def list_replacements(
    conn: Connection, symbol: str | None = None, timeframe: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Recorded replacements, newest first (then by bar time), optionally of one ``symbol`` and
    ``timeframe``; ``ts`` and ``replaced_at`` as UTC timestamps. Columns: :data:`REPLACEMENT_COLUMNS`."""
    table = BarReplacementRow.__table__
    query = select(*(table.c[c] for c in REPLACEMENT_COLUMNS))
    if symbol is not None:
        query = query.where(table.c.symbol == symbol)
    if timeframe is not None:
        query = query.where(table.c.timeframe == timeframe)
    query = query.order_by(table.c.replaced_at.desc(), table.c.ts, table.c.id)
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(REPLACEMENT_COLUMNS))
    for column in ("ts", "replaced_at"):
        frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="ms", utc=True)
    return frame
