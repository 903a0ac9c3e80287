"""The ``quarantine`` table: input rows held back by validation until someone decides.

A quarantined row keeps the row as received (``row``: raw values as strings or numbers, NaN and
infinities as the strings ``"nan"``, ``"inf"``, ``"-inf"``, timestamps as ISO strings), the ids of
the expectations it failed and a human-readable reason. Its ``ts`` is the bar's open time (UTC),
or None when the row's timestamp could not be parsed. A row stays ``quarantined`` until
:func:`decide_quarantine` marks it ``released`` or ``dropped``; each decision also writes an
``audit_log`` row, on the same connection, so both are kept or both rolled back.

Quarantining is idempotent: a row identical to one still pending (same symbol, timeframe, ts
and row) is not stored again, so re-ingesting the same bad file adds nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, insert, or_, select, update

from storage._redact import plain_json
from storage._time import now_ms as _now_ms
from storage._time import optional_ms as _ms
from storage._time import optional_ts as _ts
from storage.audit import audit
from storage.schema import (
    QUARANTINE_STATUSES,
    IngestRunRow,
    QuarantineRow,
    ValidationResultRow,
)

DECISIONS: tuple[str, ...] = ("released", "dropped")
_CHUNK = 500
_ACTIONS = {"released": "quarantine.release", "dropped": "quarantine.drop"}


@dataclass(frozen=True)
class QuarantinedRow:
    """One row to quarantine: its bar time (None when it could not be parsed), the row as
    received, the ids of the expectations it failed and why, in words."""

    ts: pd.Timestamp | None
    row: dict[str, Any]
    failed_expectations: list[str]
    reasons: str


@dataclass(frozen=True)
class QuarantineEntry:
    """One row of ``quarantine``; timestamps are UTC ``pd.Timestamp`` (None while unknown)."""

    id: int
    symbol: str
    timeframe: str
    ts: pd.Timestamp | None
    row: dict[str, Any]
    failed_expectations: list[str]
    reasons: str
    source: str
    ingest_run_id: int | None
    validation_id: int | None
    status: str
    created_at: pd.Timestamp
    decided_at: pd.Timestamp | None
    decided_by: str | None
    decision_note: str | None


def _key(row: Any) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _entry(row: Any) -> QuarantineEntry:
    return QuarantineEntry(
        id=row.id,
        symbol=row.symbol,
        timeframe=row.timeframe,
        ts=_ts(row.ts),
        row=dict(row.row_json),
        failed_expectations=[str(e) for e in row.failed_expectations],
        reasons=row.reasons,
        source=row.source,
        ingest_run_id=row.ingest_run_id,
        validation_id=row.validation_id,
        status=row.status,
        created_at=pd.Timestamp(int(row.created_at) * 1_000_000, tz="UTC"),
        decided_at=_ts(row.decided_at),
        decided_by=row.decided_by,
        decision_note=row.decision_note,
    )


def _pending(
    conn: Connection, symbol: str, timeframe: str, stamps: set[int | None]
) -> dict[tuple[int | None, str], int]:
    """Ids of the rows still quarantined for ``symbol``/``timeframe`` at ``stamps``, by (ts, row key)."""
    found: dict[tuple[int | None, str], int] = {}
    base = select(QuarantineRow.id, QuarantineRow.ts, QuarantineRow.row_json).where(
        QuarantineRow.symbol == symbol,
        QuarantineRow.timeframe == timeframe,
        QuarantineRow.status == "quarantined",
    )
    queries = [
        base.where(QuarantineRow.ts.in_(chunk))
        for chunk in _chunks(sorted(s for s in stamps if s is not None))
    ]
    if None in stamps:
        queries.append(base.where(QuarantineRow.ts.is_(None)))
    for query in queries:
        for row in conn.execute(query).all():
            found.setdefault((row.ts, _key(row.row_json)), row.id)
    return found


def quarantine_rows(
    conn: Connection,
    *,
    symbol: str,
    timeframe: str,
    source: str,
    rows: Sequence[QuarantinedRow],
    ingest_run_id: int | None = None,
    validation_id: int | None = None,
) -> list[int]:
    """Store ``rows`` as ``quarantined`` and return one id per input row, in input order.

    A row identical to one still pending (same symbol, timeframe, ts and row; see the module
    docstring) is not stored again: its id is that of the pending row, so the returned list
    always has ``len(rows)`` ids, and duplicates within ``rows`` share one id. ``ts`` is stored
    to the millisecond (naive taken as UTC; None or NaT stored as NULL).

    Raises:
        ValueError: when ``symbol``, ``timeframe`` or ``source`` is empty, or a row has no failed
            expectation.
        TypeError: when an item of ``rows`` is not a :class:`QuarantinedRow`, its ``row`` not a
            dict, its ``failed_expectations`` not a list of strings or its ``reasons`` not a string.
        sqlalchemy.exc.IntegrityError: when ``ingest_run_id`` or ``validation_id`` names no row.
    """
    _check_text("symbol", symbol)
    _check_text("timeframe", timeframe)
    _check_text("source", source)
    prepared: list[tuple[int | None, str, dict[str, Any], QuarantinedRow]] = []
    for i, item in enumerate(rows):
        if not isinstance(item, QuarantinedRow):
            raise TypeError(f"rows[{i}] must be a QuarantinedRow, not {type(item).__name__}")
        if not isinstance(item.row, dict):
            raise TypeError(f"rows[{i}].row must be a dict, not {type(item.row).__name__}")
        failed = item.failed_expectations
        if isinstance(failed, str) or not isinstance(failed, list | tuple):
            raise TypeError(f"rows[{i}].failed_expectations must be a list of expectation ids")
        if not all(isinstance(e, str) for e in failed):
            raise TypeError(f"rows[{i}].failed_expectations must hold strings, got {failed!r}")
        if not failed:
            raise ValueError(f"rows[{i}] names no failed expectation; only failed rows are quarantined")
        if not isinstance(item.reasons, str):
            raise TypeError(f"rows[{i}].reasons must be a string, not {type(item.reasons).__name__}")
        raw = plain_json(item.row)
        prepared.append((_ms(item.ts), _key(raw), raw, item))
    if not prepared:
        return []
    known = _pending(conn, symbol, timeframe, {p[0] for p in prepared})
    created_at = _now_ms()
    new_keys: list[tuple[int | None, str]] = []
    seen: set[tuple[int | None, str]] = set(known)
    params: list[dict[str, Any]] = []
    for ts, key, raw, item in prepared:
        if (ts, key) in seen:
            continue
        seen.add((ts, key))
        new_keys.append((ts, key))
        params.append(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "ts": ts,
                "row_json": raw,
                "failed_expectations": list(item.failed_expectations),
                "reasons": item.reasons,
                "source": source,
                "ingest_run_id": ingest_run_id,
                "validation_id": validation_id,
                "status": "quarantined",
                "created_at": created_at,
            }
        )
    if params:
        statement = insert(QuarantineRow).returning(QuarantineRow.id, sort_by_parameter_order=True)
        ids = conn.execute(statement, params).scalars().all()
        known.update(zip(new_keys, (int(i) for i in ids), strict=True))
    return [known[(ts, key)] for ts, key, _, _ in prepared]


def _check_status(status: str | None) -> None:
    if status is not None and status not in QUARANTINE_STATUSES:
        raise ValueError(
            f"status {status!r} is not one of {', '.join(QUARANTINE_STATUSES)} (or None for all)"
        )


def list_quarantine(
    conn: Connection,
    *,
    status: str | None = "quarantined",
    symbol: str | None = None,
    timeframe: str | None = None,
) -> list[QuarantineEntry]:
    """Quarantined rows in the order they were stored: by default those still pending.

    ``status=None`` lists every row whatever its status; ``symbol`` and ``timeframe`` narrow it.

    Raises:
        ValueError: when ``status`` is not ``quarantined``, ``released``, ``dropped`` or None.
    """
    _check_status(status)
    query = select(QuarantineRow.__table__).order_by(QuarantineRow.id)
    if status is not None:
        query = query.where(QuarantineRow.status == status)
    if symbol is not None:
        query = query.where(QuarantineRow.symbol == symbol)
    if timeframe is not None:
        query = query.where(QuarantineRow.timeframe == timeframe)
    return [_entry(row) for row in conn.execute(query).all()]


def _unique_ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, int):
        ids = [ids]
    out: list[int] = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"quarantine ids must be ints, got {value!r}")
        if value not in out:
            out.append(value)
    return out


def get_quarantine(conn: Connection, ids: Iterable[int]) -> list[QuarantineEntry]:
    """The quarantine rows with ``ids``, in the order given (repeated ids once; none gives ``[]``).

    Raises:
        LookupError: naming every id that matches no quarantine row.
        TypeError: when an id is not an int.
    """
    wanted = _unique_ids(ids)
    found: dict[int, QuarantineEntry] = {}
    for chunk in _chunks(wanted):
        query = select(QuarantineRow.__table__).where(QuarantineRow.id.in_(chunk))
        found.update((row.id, _entry(row)) for row in conn.execute(query).all())
    missing = [i for i in wanted if i not in found]
    if missing:
        raise LookupError(
            f"no quarantined row with id {', '.join(map(str, missing))}; list them with `fks quarantine list`"
        )
    return [found[i] for i in wanted]


def decide_quarantine(
    conn: Connection, ids: Iterable[int], *, status: str, actor: str, note: str = ""
) -> None:
    """Mark the pending rows ``ids`` as ``released`` or ``dropped`` by ``actor``, now.

    Every row must still be ``quarantined``; the check comes before any write, so a refused call
    writes nothing. Each decided row gets one ``audit_log`` row (action ``quarantine.release`` or
    ``quarantine.drop``, subject ``quarantine:<id>``) on the same connection: run it in one
    transaction (``engine.begin()``) so rows and audit are kept or rolled back together. No ids
    is a no-op. Releasing does not write bars: the caller stores the released rows.

    Raises:
        ValueError: when ``status`` is not ``released`` or ``dropped``, ``actor`` is empty, or
            some rows are already decided (naming them and their status); also when another
            writer decided one of the rows meanwhile (then roll the transaction back).
        LookupError: naming every id that matches no quarantine row.
        TypeError: when an id is not an int or ``note`` not a string.
    """
    if status not in DECISIONS:
        raise ValueError(f"status {status!r} is not a decision; use 'released' or 'dropped'")
    _check_text("actor", actor)
    if len(actor) > 128:
        raise ValueError(f"actor must be at most 128 characters, got {len(actor)}")
    if not isinstance(note, str):
        raise TypeError(f"note must be a string, not {type(note).__name__}")
    entries = get_quarantine(conn, ids)
    decided = [e for e in entries if e.status != "quarantined"]
    if decided:
        listed = ", ".join(f"{e.id} ({e.status})" for e in decided)
        raise ValueError(
            f"quarantine rows already decided: {listed}; only quarantined rows can be decided "
            "(`fks quarantine list --status all` shows every row's status)"
        )
    if not entries:
        return
    now = _now_ms()
    for chunk in _chunks([e.id for e in entries]):
        done = conn.execute(
            update(QuarantineRow)
            .where(QuarantineRow.id.in_(chunk), QuarantineRow.status == "quarantined")
            .values(status=status, decided_at=now, decided_by=actor, decision_note=note or None)
        )
        if done.rowcount != len(chunk):
            raise ValueError(
                "some quarantine rows were decided by another writer meanwhile; roll back and retry"
            )
    for entry in entries:
        audit(
            conn,
            actor=actor,
            action=_ACTIONS[status],
            subject=f"quarantine:{entry.id}",
            details={
                "id": entry.id,
                "symbol": entry.symbol,
                "timeframe": entry.timeframe,
                "ts": entry.ts,
                "from": "quarantined",
                "to": status,
                "failed_expectations": entry.failed_expectations,
                "note": note,
            },
        )


def quarantine_counts(
    conn: Connection,
    batch_id: str | None = None,
    *,
    ingest_run_ids: Iterable[int] | None = None,
    status: str | None = None,
) -> dict[str, int]:
    """How many quarantined rows failed each expectation id (a row counts once per id it failed).

    ``batch_id`` selects rows whose ingest run or validation result belongs to that batch;
    ``ingest_run_ids`` rows of those runs; neither, every row. ``status`` narrows to one status
    (None: any). Keys are sorted; expectations without rows are absent.

    Raises:
        ValueError: when both ``batch_id`` and ``ingest_run_ids`` are given, or ``status`` is unknown.
    """
    if batch_id is not None and ingest_run_ids is not None:
        raise ValueError("give batch_id or ingest_run_ids, not both")
    _check_status(status)
    base = select(QuarantineRow.failed_expectations)
    if status is not None:
        base = base.where(QuarantineRow.status == status)
    queries = []
    if batch_id is not None:
        runs = select(IngestRunRow.id).where(IngestRunRow.batch_id == batch_id)
        validations = select(ValidationResultRow.id).where(ValidationResultRow.batch_id == batch_id)
        queries.append(
            base.where(
                or_(QuarantineRow.ingest_run_id.in_(runs), QuarantineRow.validation_id.in_(validations))
            )
        )
    elif ingest_run_ids is not None:
        run_ids = _unique_ids(ingest_run_ids)
        queries.extend(base.where(QuarantineRow.ingest_run_id.in_(chunk)) for chunk in _chunks(run_ids))
    else:
        queries.append(base)
    counts: Counter[str] = Counter()
    for query in queries:
        for failed in conn.execute(query).scalars():
            counts.update(str(e) for e in dict.fromkeys(failed))
    return dict(sorted(counts.items()))
