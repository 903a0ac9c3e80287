"""SEC EDGAR company data: ``companies``, ``company_filings`` and ``company_facts``.

Writes are idempotent: each function compares what it is given with what is stored, inserts
the new rows, updates the rows whose values changed and leaves identical rows untouched, so
re-running the same data writes nothing (``companies.updated_at`` moves only when the company
changed). A fact is identified by the table's unique key ``(cik, taxonomy, concept, unit,
accession, period_start, period_end)``; a filing by its accession number. Inserts use
``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL) so two writers racing on the same rows do not
fail. The caller owns the transaction (``with engine.begin() as conn: upsert_facts(conn, ...)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from storage._time import now_ms
from storage.bars import UpsertResult
from storage.schema import CompanyFactRow, CompanyFilingRow, CompanyRow

FACT_KEY: tuple[str, ...] = ("taxonomy", "concept", "unit", "accession", "period_start", "period_end")
FACT_VALUES: tuple[str, ...] = ("value", "fiscal_year", "fiscal_period", "form", "filed", "frame")
FACT_COLUMNS: tuple[str, ...] = (
    "taxonomy",
    "concept",
    "unit",
    "period_start",
    "period_end",
    "value",
    "fiscal_year",
    "fiscal_period",
    "form",
    "filed",
    "accession",
    "frame",
)
FILING_VALUES: tuple[str, ...] = ("cik", "form", "filing_date", "report_date", "primary_document")
_CHUNK = 5_000


@dataclass(frozen=True)
class CompanyRecord:
    """A stored company with how many filings and facts the store holds for it."""

    cik: str
    name: str
    tickers: list[str]
    sic: str | None
    fiscal_year_end: str | None
    updated_at: pd.Timestamp
    filings: int
    facts: int


def _check_cik(cik: str) -> str:
    if not isinstance(cik, str) or len(cik) != 10 or not cik.isdigit():
        raise ValueError(f"cik {cik!r} must be EDGAR's 10-digit, zero-padded string (e.g. '0000320193')")
    return cik


def _table(row_class: Any) -> Table:
    table: Table = row_class.__table__
    return table


def _insert_ignoring_conflicts(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` in chunks, skipping any that another writer inserted meanwhile."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        make: Any = postgresql.insert
    elif dialect == "sqlite":
        make = sqlite.insert
    else:
        raise NotImplementedError(f"company store supports SQLite and PostgreSQL, not {dialect!r}")
    for i in range(0, len(rows), _CHUNK):
        conn.execute(make(table).on_conflict_do_nothing(), rows[i : i + _CHUNK])


def upsert_company(
    conn: Connection,
    cik: str,
    name: str,
    tickers: Sequence[str] = (),
    sic: str | None = None,
    fiscal_year_end: str | None = None,
) -> bool:
    """Insert or update company ``cik``; returns True when something was written.

    Raises:
        ValueError: a CIK that is not 10 digits, or an empty name.
    """
    cik = _check_cik(cik)
    if not name or not name.strip():
        raise ValueError(f"company {cik} needs a name")
    values = {
        "name": name,
        "tickers": list(tickers),
        "sic": sic or None,
        "fiscal_year_end": fiscal_year_end or None,
    }
    table = _table(CompanyRow)
    stored = conn.execute(select(table).where(table.c.cik == cik)).first()
    if stored is None:
        _insert_ignoring_conflicts(conn, table, [{"cik": cik, **values, "updated_at": now_ms()}])
        return True
    if all(getattr(stored, k) == v for k, v in values.items()):
        return False
    conn.execute(update(table).where(table.c.cik == cik).values(**values, updated_at=now_ms()))
    return True


def upsert_filings(conn: Connection, cik: str, rows: Iterable[Mapping[str, Any]]) -> UpsertResult:
    """Insert or update the filings of company ``cik`` (keyed by ``accession``).

    Each row has ``accession, form, filing_date, report_date, primary_document`` (dates
    ``YYYY-MM-DD``, ``report_date`` may be empty). A repeated accession keeps the last row. A
    joint filing already stored under another company's CIK keeps that company (the table has
    one row per accession) and counts as unchanged.

    Raises:
        ValueError: a bad CIK or a row without an accession.
    """
    cik = _check_cik(cik)
    wanted: dict[str, dict[str, Any]] = {}
    for row in rows:
        accession = row.get("accession")
        if not accession:
            raise ValueError(f"a filing of {cik} lacks its accession number")
        wanted[str(accession)] = {
            "accession": str(accession),
            "cik": cik,
            "form": str(row.get("form") or ""),
            "filing_date": str(row.get("filing_date") or ""),
            "report_date": str(row.get("report_date") or ""),
            "primary_document": str(row.get("primary_document") or ""),
        }
    table = _table(CompanyFilingRow)
    stored: dict[str, tuple[Any, ...]] = {}
    keys = list(wanted)
    for i in range(0, len(keys), 500):
        query = select(table).where(table.c.accession.in_(keys[i : i + 500]))
        for r in conn.execute(query):
            stored[r.accession] = tuple(getattr(r, c) for c in FILING_VALUES)
    new = [row for acc, row in wanted.items() if acc not in stored]
    changed = [
        row
        for acc, row in wanted.items()
        if acc in stored and stored[acc][0] == cik and stored[acc] != tuple(row[c] for c in FILING_VALUES)
    ]
    _insert_ignoring_conflicts(conn, table, new)
    for row in changed:
        conn.execute(
            update(table)
            .where(table.c.accession == row["accession"])
            .values({c: row[c] for c in FILING_VALUES})
        )
    return UpsertResult(len(wanted), len(new), len(changed), len(wanted) - len(new) - len(changed))


def _fact_row(cik: str, row: Mapping[str, Any]) -> dict[str, Any]:
    missing = [
        c
        for c in ("taxonomy", "concept", "unit", "period_end", "value", "filed", "accession")
        if row.get(c) in (None, "")
    ]
    if missing:
        raise ValueError(f"a fact of {cik} lacks {', '.join(missing)}: {dict(row)}")
    fy = row.get("fiscal_year")
    return {
        "cik": cik,
        "taxonomy": str(row["taxonomy"]),
        "concept": str(row["concept"]),
        "unit": str(row["unit"]),
        "period_start": str(row.get("period_start") or ""),
        "period_end": str(row["period_end"]),
        "value": float(row["value"]),
        "fiscal_year": int(fy) if fy is not None else None,
        "fiscal_period": row.get("fiscal_period") or None,
        "form": row.get("form") or None,
        "filed": str(row["filed"]),
        "accession": str(row["accession"]),
        "frame": row.get("frame") or None,
    }


def upsert_facts(conn: Connection, cik: str, rows: Iterable[Mapping[str, Any]]) -> UpsertResult:
    """Insert or update the XBRL facts of company ``cik``.

    Each row has the keys of :data:`FACT_COLUMNS` (``period_start`` empty for instant facts,
    dates ``YYYY-MM-DD``). Rows with the same key (:data:`FACT_KEY`) collapse to the last one.

    Raises:
        ValueError: a bad CIK or a row without its concept, unit, end date, value, filing date
            or accession.
    """
    cik = _check_cik(cik)
    wanted: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        fact = _fact_row(cik, row)
        wanted[tuple(fact[c] for c in FACT_KEY)] = fact
    table = _table(CompanyFactRow)
    columns = [table.c[c] for c in (*FACT_KEY, *FACT_VALUES)] + [table.c.id]
    stored: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
    for r in conn.execute(select(*columns).where(table.c.cik == cik)):
        stored[tuple(r[: len(FACT_KEY)])] = (tuple(r[len(FACT_KEY) : -1]), r[-1])
    new = [fact for key, fact in wanted.items() if key not in stored]
    changed = [
        (stored[key][1], fact)
        for key, fact in wanted.items()
        if key in stored and stored[key][0] != tuple(fact[c] for c in FACT_VALUES)
    ]
    _insert_ignoring_conflicts(conn, table, new)
    for row_id, fact in changed:
        conn.execute(update(table).where(table.c.id == row_id).values({c: fact[c] for c in FACT_VALUES}))
    return UpsertResult(len(wanted), len(new), len(changed), len(wanted) - len(new) - len(changed))


def read_facts(conn: Connection, cik: str, concept: str | None = None) -> pd.DataFrame:
    """The stored facts of company ``cik`` (optionally one ``concept``, e.g. ``Revenues``).

    Returns:
        A frame with ``cik`` and the columns of :data:`FACT_COLUMNS`, sorted by concept, unit,
        period end, period start and filing date. ``fiscal_year`` is a nullable integer.
    """
    cik = _check_cik(cik)
    table = _table(CompanyFactRow)
    query = select(table.c.cik, *(table.c[c] for c in FACT_COLUMNS)).where(table.c.cik == cik)
    if concept is not None:
        query = query.where(table.c.concept == concept)
    query = query.order_by(
        table.c.taxonomy,
        table.c.concept,
        table.c.unit,
        table.c.period_end,
        table.c.period_start,
        table.c.filed,
    )
    frame = pd.DataFrame(conn.execute(query).all(), columns=["cik", *FACT_COLUMNS])
    frame["value"] = frame["value"].astype("float64")
    frame["fiscal_year"] = frame["fiscal_year"].astype("Int64")
    return frame


def read_filings(conn: Connection, cik: str) -> pd.DataFrame:
    """The stored filings of company ``cik``, newest filing date first."""
    cik = _check_cik(cik)
    table = _table(CompanyFilingRow)
    query = select(table).where(table.c.cik == cik).order_by(table.c.filing_date.desc(), table.c.accession)
    return pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in table.columns])


def list_companies(conn: Connection) -> list[CompanyRecord]:
    """Every stored company, by CIK, with its filing and fact counts."""
    companies = _table(CompanyRow)
    filings = _table(CompanyFilingRow)
    facts = _table(CompanyFactRow)
    filing_counts = (
        select(filings.c.cik, func.count().label("n")).group_by(filings.c.cik).subquery("filing_counts")
    )
    fact_counts = select(facts.c.cik, func.count().label("n")).group_by(facts.c.cik).subquery("fact_counts")
    query = (
        select(
            companies,
            func.coalesce(filing_counts.c.n, 0).label("filing_count"),
            func.coalesce(fact_counts.c.n, 0).label("fact_count"),
        )
        .outerjoin(filing_counts, and_(filing_counts.c.cik == companies.c.cik))
        .outerjoin(fact_counts, and_(fact_counts.c.cik == companies.c.cik))
        .order_by(companies.c.cik)
    )
    return [
        CompanyRecord(
            cik=r.cik,
            name=r.name,
            tickers=list(r.tickers or []),
            sic=r.sic,
            fiscal_year_end=r.fiscal_year_end,
            updated_at=pd.Timestamp(int(r.updated_at), unit="ms", tz="UTC"),
            filings=int(r.filing_count),
            facts=int(r.fact_count),
        )
        for r in conn.execute(query)
    ]
