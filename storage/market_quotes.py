"""The ``market_quotes`` table: the latest market-wide listing of an aggregator (CoinMarketCap's
ranks, prices, 24-hour volumes and market caps), stored by ``fks market overview`` and read by
the overview page (market cap, rank, dominance). The caller owns the transaction.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pandas as pd
from sqlalchemy import Connection, Table, delete, insert, select

from storage._time import now_ms, optional_ms
from storage.schema import MarketQuoteRow

QUOTE_COLUMNS: tuple[str, ...] = (
    "rank",
    "symbol",
    "name",
    "price",
    "volume_24h",
    "market_cap",
    "percent_change_24h",
    "last_updated",
)
"""The columns a listing comes in with (as :meth:`providers.coinmarketcap.CoinMarketCapProvider.listings`
returns them) and goes out with, plus ``fetched_at``."""
_TABLE = cast(Table, MarketQuoteRow.__table__)


def _float(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def store_market_quotes(conn: Connection, listing: pd.DataFrame, *, source: str, currency: str) -> int:
    """Make ``listing`` the stored listing of ``source`` in ``currency``: the rows stored before
    for that pair are replaced (so shares of the stored market caps are shares of this listing).
    Returns the rows stored.

    Raises:
        ValueError: a column of :data:`QUOTE_COLUMNS` is missing, a symbol repeats or is empty,
            or ``source``/``currency`` is empty.
    """
    if not source or not currency:
        raise ValueError("store_market_quotes needs a source and a currency")
    missing = [c for c in QUOTE_COLUMNS if c not in listing.columns]
    if missing:
        raise ValueError(f"the listing lacks columns {missing}; expected {list(QUOTE_COLUMNS)}")
    symbols = [str(s).strip().upper() for s in listing["symbol"]]
    if any(not s for s in symbols) or len(set(symbols)) != len(symbols):
        raise ValueError("every listed coin needs a symbol of its own")
    fetched = now_ms()
    rows = [
        {
            "source": source,
            "symbol": symbol,
            "currency": currency.upper(),
            "name": str(r["name"] or "")[:128],
            "rank": None if pd.isna(r["rank"]) else int(r["rank"]),
            "price": _float(r["price"]),
            "volume_24h": _float(r["volume_24h"]),
            "market_cap": _float(r["market_cap"]),
            "percent_change_24h": _float(r["percent_change_24h"]),
            "last_updated": None
            if pd.isna(r["last_updated"])
            else optional_ms(pd.Timestamp(r["last_updated"])),
            "fetched_at": fetched,
        }
        for symbol, r in zip(symbols, listing.to_dict("records"), strict=True)
    ]
    table = _TABLE
    conn.execute(delete(table).where(table.c.source == source, table.c.currency == currency.upper()))
    if rows:
        conn.execute(insert(table), rows)
    return len(rows)


def list_market_quotes(
    conn: Connection, *, source: str = "coinmarketcap", currency: str = "USD"
) -> pd.DataFrame:
    """The stored listing of ``source`` in ``currency``, by rank (unranked last): columns
    :data:`QUOTE_COLUMNS` and ``fetched_at`` (times as UTC timestamps, missing figures NaN)."""
    table = _TABLE
    query = select(table).where(table.c.source == source, table.c.currency == currency.upper())
    rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=[*QUOTE_COLUMNS, "fetched_at"])
    for column in ("price", "volume_24h", "market_cap", "percent_change_24h"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["rank"] = frame["rank"].astype("Int64")
    for column in ("last_updated", "fetched_at"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame.sort_values(["rank", "symbol"], na_position="last").reset_index(drop=True)
