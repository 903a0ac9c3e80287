"""Screening of bars by the ``bars`` suite, shared by ingestion, backfill, lake import,
re-validation and releases.

Good rows go to ``bars``; failing rows go to ``quarantine`` with the expectations they failed;
every run is recorded in ``validation_results``. :func:`screen_incoming` screens bars arriving
for a series; :func:`store_screened` writes the result (upsert, record, quarantine) on the
caller's connection, so a series is stored atomically together with whatever the caller marks
in the same transaction (an ingest run, a backfill chunk, a release decision)::

    screened = screen_incoming(engine, settings, bars, symbol="SPX", timeframe="1d",
                               calendar="XNYS", asset_class="equity", start=None)
    with engine.begin() as conn:
        stored = store_screened(conn, screened, symbol="SPX", timeframe="1d", source="csv",
                                batch_id=uuid.uuid4().hex, trigger="ingest")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from config.settings import Settings
from config.validation import ValidationPolicy, load_validation_policy
from expectations.runner import ValidationReport, validate_bars
from market.bars import BAR_COLUMNS
from market.calendars import GapReport, get_calendar
from providers.base import RowProblem
from storage.bars import UpsertResult, read_bars, upsert_bars
from storage.corporate_actions import list_corporate_actions
from storage.quarantine import QuarantinedRow, list_quarantine, quarantine_rows
from storage.validation_results import record_validation

PARSE_EXPECTATION = "parseable_row"
"""The expectation id of a file row that could not become a bar."""

MAX_WARNED_ROWS = 10_000
"""Most bar times recorded per warning expectation in one ``validation_results`` row."""

Writer = Callable[[Connection, pd.DataFrame], UpsertResult]
"""How :func:`store_screened` writes the good bars: ``write(conn, good) -> UpsertResult``."""


@dataclass(frozen=True)
class Screened:
    """Bars split by the suite: ``good`` to store, ``rejected`` to quarantine, and the report.

    ``warned`` holds the open time of every bar that failed a ``warning`` expectation (stored
    and flagged) with those expectation ids.
    """

    good: pd.DataFrame
    rejected: list[QuarantinedRow]
    report: ValidationReport
    warned: list[tuple[pd.Timestamp, list[str]]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Stored:
    """What :func:`store_screened` wrote: the good bars' upsert counts and the rows quarantined."""

    upsert: UpsertResult
    quarantined: int


def policy_for(settings: Settings) -> ValidationPolicy:
    """The validation policy named by ``settings.validation_file``, read once per process and
    version of the file (its modification time and size): every series of a run validates with the
    same policy without parsing the YAML again.

    Raises:
        ValueError: when the policy file is missing or invalid.
    """
    file = Path(settings.validation_file)
    try:
        stat = file.stat()
    except OSError:
        return load_validation_policy(file)  # missing: its message
    return _policy(str(file), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _policy(path: str, mtime_ns: int, size: int) -> ValidationPolicy:
    """The (frozen) policy of ``path`` at that version of the file."""
    return load_validation_policy(path)


def docs_dir(settings: Settings) -> Path:
    """Where Great Expectations Data Docs are rendered: ``<data dir>/validation``."""
    return settings.data_dir / "validation"


def released_waivers(conn: Connection, symbol: str, timeframe: str) -> dict[pd.Timestamp, list[str]]:
    """Expectations a person waived for rows of this series by releasing them from quarantine."""
    waivers: dict[pd.Timestamp, list[str]] = {}
    for entry in list_quarantine(conn, status="released", symbol=symbol, timeframe=timeframe):
        if entry.ts is not None:
            waivers.setdefault(entry.ts, []).extend(entry.failed_expectations)
    return waivers


def recorded_splits(conn: Connection, symbol: str) -> dict[pd.Timestamp, float]:
    """The recorded splits of ``symbol``: ex-date -> ratio."""
    return {a.ex_date: a.ratio for a in list_corporate_actions(conn, symbol)}


def history_before(
    conn: Connection, symbol: str, timeframe: str, start: pd.Timestamp | None, bars: int
) -> pd.DataFrame:
    """The last ``bars`` stored bars before ``start`` (context for return checks; never re-judged)."""
    if start is None:
        return read_bars(conn, symbol, timeframe).iloc[:0]
    return read_bars(conn, symbol, timeframe, end=start).iloc[-bars:]


def screen_incoming(
    engine: Engine,
    settings: Settings,
    bars: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    calendar: str,
    asset_class: str,
    start: pd.Timestamp | None,
    run: str | None = None,
) -> Screened:
    """Screen bars arriving for a series (ingest, backfill, lake import) with the ``bars`` suite:
    the stored bars just before ``start`` are the return checks' context and the series' released
    waivers are honoured; Data Docs go under :func:`docs_dir`, the page naming the series and
    ``run`` (e.g. ``"ingest run 12"``; default a fresh validation run name).

    Raises:
        ValueError: an unreadable validation policy, or an unknown calendar or timeframe.
    """
    policy = policy_for(settings)
    with engine.connect() as conn:
        lookback = policy.return_bound(asset_class, timeframe).window + 2
        history = history_before(conn, symbol, timeframe, start, lookback)
        waived = released_waivers(conn, symbol, timeframe)
        splits = recorded_splits(conn, symbol)
    return screen(
        bars,
        symbol=symbol,
        timeframe=timeframe,
        calendar=calendar,
        asset_class=asset_class,
        policy=policy,
        history=history,
        waived=waived,
        docs=docs_dir(settings),
        splits=splits,
        run=run,
    )


def _row_dict(bars: pd.DataFrame, position: int) -> dict[str, Any]:
    row = bars.iloc[position]
    return {"ts": bars.index[position].isoformat(), **{c: float(row[c]) for c in BAR_COLUMNS}}


def screen(
    bars: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    calendar: str,
    asset_class: str,
    policy: ValidationPolicy,
    history: pd.DataFrame | None,
    waived: Mapping[pd.Timestamp, Sequence[str]] | None,
    docs: Path | None,
    now: pd.Timestamp | None = None,
    splits: Mapping[pd.Timestamp, float] | None = None,
    run: str | None = None,
) -> Screened:
    """Run the ``bars`` suite on canonical ``bars`` and split them into good and rejected rows.

    ``splits``: the symbol's recorded splits (ex-date -> ratio), so that a jump by a recorded
    split's ratio on its ex-date is an unadjusted split (a warning), not an error. ``run`` names
    the validation run on its Data Docs page (see :func:`expectations.runner.validate_bars`)."""
    report = validate_bars(
        bars.reset_index(),
        symbol=symbol,
        timeframe=timeframe,
        calendar=get_calendar(calendar),
        asset_class=asset_class,
        policy=policy,
        now=now,
        history=history,
        waived=waived,
        docs_dir=docs,
        splits=splits,
        run=run,
    )
    failed = sorted(report.failures)
    rejected = [
        QuarantinedRow(
            ts=bars.index[pos],
            row=_row_dict(bars, pos),
            failed_expectations=list(report.failures[pos]),
            reasons="; ".join(report.reasons(pos)),
        )
        for pos in failed
    ]
    good = bars.drop(index=bars.index[failed]) if failed else bars
    warned = [(bars.index[pos], list(ids)) for pos, ids in report.warnings.items()]
    return Screened(good=good, rejected=rejected, report=report, warned=warned)


def parse_rejects(problems: Sequence[RowProblem], path: Path | None) -> list[QuarantinedRow]:
    """Quarantine rows for file rows that could not become bars (one row per file line)."""
    lines: list[str] = []
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
    by_line: dict[int, list[RowProblem]] = {}
    for problem in problems:
        by_line.setdefault(problem.row, []).append(problem)
    rejects = []
    for line, found in sorted(by_line.items()):
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        row: dict[str, Any] = {
            "file": str(path) if path else None,
            "line": line,
            "text": text,
            "cells": {p.column: p.value for p in found},
        }
        reasons = "; ".join(f"{p.column}={p.value!r}: {p.reason}" for p in found)
        rejects.append(
            QuarantinedRow(ts=None, row=row, failed_expectations=[PARSE_EXPECTATION], reasons=reasons)
        )
    return rejects


def gap_summary(gaps: GapReport) -> dict[str, Any]:
    """A JSON-able summary of a gap report: ``expected``, ``missing``, ``gaps`` (a count) and
    ``longest`` (``{start, end, bars}`` or None)."""
    longest = gaps.longest
    return {
        "expected": gaps.expected,
        "missing": gaps.missing,
        "gaps": len(gaps.gaps),
        "longest": None
        if longest is None
        else {"start": longest.start.isoformat(), "end": longest.end.isoformat(), "bars": longest.bars},
    }


def longest_gap_text(gaps: GapReport) -> str:
    """``"<bars> bars from <YYYY-MM-DDTHH:MM>"`` for the longest gap, or an empty string."""
    longest = gaps.longest
    return f"{longest.bars} bars from {longest.start.isoformat()[:16]}" if longest else ""


def quarantine_reasons(rejected: Sequence[QuarantinedRow]) -> dict[str, int]:
    """How many rejected rows failed each expectation."""
    reasons: dict[str, int] = {}
    for row in rejected:
        for expectation in row.failed_expectations:
            reasons[expectation] = reasons.get(expectation, 0) + 1
    return reasons


def _outcomes(screened: Screened) -> list[dict[str, Any]]:
    """The report's outcomes; each warning outcome lists the open times of the bars it flagged."""
    flagged: dict[str, list[str]] = {}
    for ts, ids in screened.warned:
        for eid in ids:
            flagged.setdefault(eid, []).append(pd.Timestamp(ts).isoformat())
    out = []
    for o in screened.report.outcomes:
        item: dict[str, Any] = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(o).items()
        }
        if o.id in flagged:
            item["rows"] = flagged[o.id][:MAX_WARNED_ROWS]
            item["rows_truncated"] = len(flagged[o.id]) > MAX_WARNED_ROWS
        out.append(item)
    return out


def record_screen(
    conn: Connection,
    screened: Screened,
    *,
    symbol: str,
    timeframe: str,
    source: str,
    batch_id: str,
    trigger: str,
    extra_rejects: Sequence[QuarantinedRow] = (),
    ingest_run_id: int | None = None,
) -> int:
    """Record the validation and quarantine the rejected rows, on ``conn``; returns rows quarantined.

    Writes no bar: :func:`store_screened` upserts the good rows and calls this; re-validation
    leaves them stored.
    """
    report = screened.report
    rejects = [*extra_rejects, *screened.rejected]
    validation_id = record_validation(
        conn,
        batch_id=batch_id,
        symbol=symbol,
        timeframe=timeframe,
        suite=report.suite,
        suite_version=str(report.suite_version),
        trigger=trigger,
        rows_checked=report.rows_checked + len(extra_rejects),
        rows_failed=len(rejects),
        rows_warned=len(report.warnings),
        success=not rejects,
        outcomes=_outcomes(screened),
        gaps=gap_summary(report.gaps),
        docs_path=str(report.docs_path) if report.docs_path else None,
        ingest_run_id=ingest_run_id,
    )
    if rejects:
        quarantine_rows(
            conn,
            symbol=symbol,
            timeframe=timeframe,
            source=source,
            rows=rejects,
            ingest_run_id=ingest_run_id,
            validation_id=validation_id,
        )
    return len(rejects)


def store_screened(
    conn: Connection,
    screened: Screened,
    *,
    symbol: str,
    timeframe: str,
    source: str,
    batch_id: str,
    trigger: str,
    extra_rejects: Sequence[QuarantinedRow] = (),
    ingest_run_id: int | None = None,
    write: Writer | None = None,
) -> Stored:
    """Store a screened series on ``conn``: the good bars upserted, the run recorded in
    ``validation_results`` and the rejected rows (``extra_rejects`` first: rows that could not be
    parsed) quarantined under ``source``.

    Runs on the caller's connection and transaction, so the caller's own marks (a new asset, a
    backfill chunk done, a release decision) commit or roll back with the bars. ``write`` stores
    the good bars (default: :func:`storage.bars.upsert_bars` with ``source``).

    Raises:
        ValueError: when the good bars are not a canonical frame (see :func:`storage.bars.upsert_bars`).
    """
    if write is None:
        upsert = upsert_bars(conn, symbol, timeframe, screened.good, source=source)
    else:
        upsert = write(conn, screened.good)
    quarantined = record_screen(
        conn,
        screened,
        symbol=symbol,
        timeframe=timeframe,
        source=source,
        batch_id=batch_id,
        trigger=trigger,
        extra_rejects=extra_rejects,
        ingest_run_id=ingest_run_id,
    )
    return Stored(upsert=upsert, quarantined=quarantined)
