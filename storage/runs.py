"""The ``ingest_runs`` table: one row per ingestion of one symbol and timeframe from one source.

A run is started (``running``) before fetching and finished (``success`` or ``failed``) after
storing. Each run records the process running it (host name, pid and, where the OS tells, the
process's start time): :func:`mark_interrupted_runs` turns the ``running`` runs of this host whose
process is gone (killed, crashed) into ``interrupted``; runs of other hosts are never touched.
Record runs on their own
connection/transaction, not on the one that writes the bars: a failed ingestion rolls its bars
back, but its ``failed`` run must be kept.

``requested`` is stored as JSON with secrets removed: values under keys that look like
credentials (``api_key``, ``token``, ``secret``, ``password``, ...), pydantic ``SecretStr``
values, URL passwords and credential query parameters become ``"***"``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Select, insert, select, update

from storage._redact import _jsonable
from storage._time import now_ms as _now_ms
from storage._time import optional_ms as _ms
from storage._time import optional_ts as _ts
from storage.bars import UpsertResult
from storage.processes import process_running, process_started
from storage.schema import IngestRunRow

FINISHED_STATUSES: tuple[str, ...] = ("success", "failed")
INTERRUPTED = "interrupted"
_MAX_ERROR_CHARS = 10_000


@dataclass(frozen=True)
class ProcessId:
    """Who runs an ingestion: the host name, the pid and the process's start time (in clock ticks
    since boot, from ``/proc``; None where the OS does not tell), so a reused pid is told apart."""

    host: str
    pid: int
    started: int | None


def current_process() -> ProcessId:
    """This process: host name, pid, start time."""
    pid = os.getpid()
    return ProcessId(host=socket.gethostname(), pid=pid, started=process_started(pid))


@dataclass(frozen=True)
class IngestRun:
    """One row of ``ingest_runs``; timestamps are UTC ``pd.Timestamp`` (None while unknown)."""

    id: int
    batch_id: str
    symbol: str
    timeframe: str
    source: str
    requested: dict[str, Any]
    status: str
    rows_received: int | None
    rows_inserted: int | None
    rows_updated: int | None
    rows_unchanged: int | None
    first_ts: pd.Timestamp | None
    last_ts: pd.Timestamp | None
    error: str | None
    started_at: pd.Timestamp
    finished_at: pd.Timestamp | None
    host: str | None = None
    pid: int | None = None


def start_ingest_run(
    conn: Connection,
    *,
    batch_id: str,
    symbol: str,
    timeframe: str,
    source: str,
    requested: Mapping[str, Any],
    process: ProcessId | None = None,
) -> int:
    """Record the start of an ingestion (status ``running``) and return its run id.

    ``requested`` is what was asked (start, end, path, options, ...); it is stored as JSON after
    removing secrets (see the module docstring). Timestamps in it are stored as ISO strings.
    ``process`` is the process running it (default: this one, :func:`current_process`).

    Raises:
        ValueError: when ``batch_id``, ``symbol``, ``timeframe`` or ``source`` is empty.
        TypeError: when ``requested`` is not a mapping.
    """
    for name, value in (
        ("batch_id", batch_id),
        ("symbol", symbol),
        ("timeframe", timeframe),
        ("source", source),
    ):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(requested, Mapping):
        raise TypeError(f"requested must be a mapping of what was asked, not {type(requested).__name__}")
    owner = process or current_process()
    result = conn.execute(
        insert(IngestRunRow).values(
            batch_id=batch_id,
            symbol=symbol,
            timeframe=timeframe,
            source=source,
            requested=_jsonable(requested),
            status="running",
            started_at=_now_ms(),
            host=owner.host,
            pid=owner.pid,
            pid_started=owner.started,
        )
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new ingest run's id")
    return int(key[0])


def finish_ingest_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    result: UpsertResult | None = None,
    first_ts: pd.Timestamp | dt.datetime | None = None,
    last_ts: pd.Timestamp | dt.datetime | None = None,
    error: str | None = None,
) -> None:
    """Mark run ``run_id`` as finished with ``status`` ``success`` or ``failed``.

    ``result`` fills the row counts, ``first_ts``/``last_ts`` the span of bars received (UTC;
    naive taken as UTC), ``error`` a message for a failed run (cut to 10,000 characters; never
    put secrets in it).

    Raises:
        ValueError: when ``status`` is not ``success`` or ``failed``, or the run is already finished.
        LookupError: when no run has the id ``run_id``.
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"status {status!r} is not a final status; use 'success' or 'failed'")
    values: dict[str, Any] = {
        "status": status,
        "first_ts": _ms(first_ts),
        "last_ts": _ms(last_ts),
        "error": None if error is None else str(error)[:_MAX_ERROR_CHARS],
        "finished_at": _now_ms(),
    }
    if result is not None:
        values |= {
            "rows_received": result.received,
            "rows_inserted": result.inserted,
            "rows_updated": result.updated,
            "rows_unchanged": result.unchanged,
        }
    done = conn.execute(
        update(IngestRunRow)
        .where(IngestRunRow.id == run_id, IngestRunRow.status == "running")
        .values(**values)
    )
    if done.rowcount == 1:
        return
    current = conn.execute(select(IngestRunRow.status).where(IngestRunRow.id == run_id)).scalar_one_or_none()
    if current is None:
        raise LookupError(f"no ingest run with id {run_id}; use the id returned by start_ingest_run")
    raise ValueError(f"ingest run {run_id} is already finished with status {current!r}")


def mark_interrupted_runs(conn: Connection, host: str | None = None) -> list[int]:
    """Mark the ``running`` runs of ``host`` (default: this host) whose process is gone as
    ``interrupted`` (finished now, with a message naming the process); return their ids.

    A run whose process still runs is left alone, and so are runs of other hosts and runs recorded
    before the process was (no pid). A process is gone when no process has its pid, the process
    with its pid started at another time, or it is a zombie
    (:func:`storage.processes.process_running`). Only the host this runs on can be checked: pass
    another ``host`` only for a host whose processes are known to be these.
    """
    here = host or socket.gethostname()
    rows = conn.execute(
        select(IngestRunRow.id, IngestRunRow.pid, IngestRunRow.pid_started).where(
            IngestRunRow.status == "running", IngestRunRow.host == here, IngestRunRow.pid.is_not(None)
        )
    ).all()
    gone = [row for row in rows if not process_running(int(row.pid), row.pid_started)]
    marked: list[int] = []
    for row in gone:
        done = conn.execute(
            update(IngestRunRow)
            .where(IngestRunRow.id == row.id, IngestRunRow.status == "running")
            .values(
                status=INTERRUPTED,
                finished_at=_now_ms(),
                error=f"interrupted: its process (pid {row.pid} on {here}) ended before the run finished",
            )
        )
        if done.rowcount == 1:
            marked.append(int(row.id))
    return marked


def recent_ingest_runs(conn: Connection, limit: int = 20) -> list[IngestRun]:
    """The ``limit`` most recently started ingest runs, newest first.

    Raises:
        ValueError: when ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    query = select(IngestRunRow.__table__).order_by(IngestRunRow.id.desc()).limit(limit)
    return _runs(conn, query)


def list_ingest_runs(conn: Connection, batch_id: str | None = None) -> list[IngestRun]:
    """Recorded ingest runs in the order they started, optionally only those of ``batch_id``."""
    query = select(IngestRunRow.__table__).order_by(IngestRunRow.id)
    if batch_id is not None:
        query = query.where(IngestRunRow.batch_id == batch_id)
    return _runs(conn, query)


def _runs(conn: Connection, query: Select[Any]) -> list[IngestRun]:
    return [
        IngestRun(
            id=row.id,
            batch_id=row.batch_id,
            symbol=row.symbol,
            timeframe=row.timeframe,
            source=row.source,
            requested=dict(row.requested),
            status=row.status,
            rows_received=row.rows_received,
            rows_inserted=row.rows_inserted,
            rows_updated=row.rows_updated,
            rows_unchanged=row.rows_unchanged,
            first_ts=_ts(row.first_ts),
            last_ts=_ts(row.last_ts),
            error=row.error,
            started_at=pd.Timestamp(int(row.started_at) * 1_000_000, tz="UTC"),
            finished_at=_ts(row.finished_at),
            host=row.host,
            pid=row.pid,
        )
        for row in conn.execute(query).all()
    ]
