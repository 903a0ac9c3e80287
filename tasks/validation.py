"""Screening of bars by the ``bars`` suite, shared by ingestion, re-validation and releases.

Good rows go to ``bars``; failing rows go to ``quarantine`` with the expectations they failed;
every run is recorded in ``validation_results``. These helpers never open a transaction of
their own for writes: the caller passes the connection so a series is stored atomically.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from config.flows import InputError
from config.settings import Settings
from config.validation import ValidationPolicy, load_validation_policy
from expectations import ValidationReport, validate_bars
from market.bars import BAR_COLUMNS, canonical_bars
from market.calendars import GapReport, get_calendar
from providers.base import RowProblem
from storage import (
    QuarantinedRow,
    QuarantineEntry,
    bar_summary,
    decide_quarantine,
    delete_bars,
    get_quarantine,
    list_assets,
    list_corporate_actions,
    list_quarantine,
    quarantine_rows,
    read_bars,
    record_validation,
    upsert_bars,
)
from tasks.store import store_for

PARSE_EXPECTATION = "parseable_row"


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


def policy_for(settings: Settings) -> ValidationPolicy:
    """The validation policy named by ``settings.validation_file``."""
    return load_validation_policy(settings.validation_file)


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
) -> Screened:
    """Screen bars arriving for a series (ingest, backfill, lake import) with the ``bars`` suite:
    the stored bars just before ``start`` are the return checks' context and the series' released
    waivers are honoured; Data Docs go under :func:`docs_dir`."""
    policy = policy_for(settings)
    with engine.connect() as conn:
        lookback = policy.return_bound(asset_class, timeframe).window + 2
        history = history_before(conn, symbol, timeframe, start, lookback)
        waived = released_waivers(conn, symbol, timeframe)
        splits = {a.ex_date: a.ratio for a in list_corporate_actions(conn, symbol)}
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
) -> Screened:
    """Run the ``bars`` suite on canonical ``bars`` and split them into good and rejected rows.

    ``splits``: the symbol's recorded splits (ex-date -> ratio), so that a jump by a recorded
    split's ratio on its ex-date is an unadjusted split (a warning), not an error."""
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
        row = {
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
    """A JSON-able summary of a gap report."""
    longest = gaps.longest
    return {
        "expected": gaps.expected,
        "missing": gaps.missing,
        "gaps": len(gaps.gaps),
        "longest": None
        if longest is None
        else {"start": longest.start.isoformat(), "end": longest.end.isoformat(), "bars": longest.bars},
    }


MAX_WARNED_ROWS = 10_000
"""Most bar times recorded per warning expectation in one ``validation_results`` row."""


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

    The caller writes the good rows (ingestion upserts them; re-validation leaves them stored).
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


class ValidateTarget(BaseModel):
    """One stored series to re-validate."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    calendar: str
    asset_class: str
    batch_id: str


class ValidateOutcome(BaseModel):
    """What re-validating one stored series found."""

    symbol: str
    timeframe: str
    rows_checked: int
    quarantined: int
    warned: int
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    missing_bars: int = 0
    gap_count: int = 0
    longest_gap: str = ""
    docs_path: str = ""


class ValidateSummary(BaseModel):
    """The validate flow's result."""

    batch_id: str
    outcomes: list[ValidateOutcome] = Field(default_factory=list)

    @property
    def quarantined(self) -> int:
        """Rows moved to quarantine across every series."""
        return sum(o.quarantined for o in self.outcomes)


@task(name="plan-validate", cache_policy=NONE)
def plan_validate(
    symbols: list[str], timeframe: str | None, batch_id: str, settings: Settings
) -> list[ValidateTarget]:
    """The stored series to re-validate, filtered by symbol and timeframe.

    Raises:
        InputError: a symbol with no stored bars, or no series at all.
    """
    engine = store_for(settings)
    with engine.connect() as conn:
        series = bar_summary(conn)
        assets = {a.symbol: a for a in list_assets(conn)}
    if timeframe is not None:
        series = series[series["timeframe"] == timeframe]
    wanted = {s.upper() for s in symbols}
    unknown = sorted(wanted - set(series["symbol"]))
    if unknown:
        raise InputError(
            f"no stored bars for {', '.join(unknown)}; run `fks ingest` first or check `fks data list`"
        )
    if wanted:
        series = series[series["symbol"].isin(wanted)]
    if series.empty:
        raise InputError("the store has no bars to validate; run `fks ingest` first")
    targets = []
    for row in series.itertuples(index=False):
        asset = assets.get(str(row.symbol))
        if asset is None:
            raise InputError(f"{row.symbol} has bars but no asset entry; ingest it again with --asset-class")
        targets.append(
            ValidateTarget(
                symbol=asset.symbol,
                timeframe=str(row.timeframe),
                calendar=asset.calendar,
                asset_class=asset.asset_class.value,
                batch_id=batch_id,
            )
        )
    return targets


@task(name="validate-series", task_run_name="validate-{target.symbol}-{target.timeframe}", cache_policy=NONE)
def validate_series(target: ValidateTarget, settings: Settings) -> ValidateOutcome:
    """Re-run the ``bars`` suite on a stored series; failing bars move to quarantine atomically."""
    engine = store_for(settings)
    with engine.connect() as conn:
        bars = read_bars(conn, target.symbol, target.timeframe)
        waived = released_waivers(conn, target.symbol, target.timeframe)
        splits = {a.ex_date: a.ratio for a in list_corporate_actions(conn, target.symbol)}
    screened = screen(
        bars,
        symbol=target.symbol,
        timeframe=target.timeframe,
        calendar=target.calendar,
        asset_class=target.asset_class,
        policy=policy_for(settings),
        history=None,
        waived=waived,
        docs=docs_dir(settings),
        splits=splits,
    )
    with engine.begin() as conn:
        quarantined = record_screen(
            conn,
            screened,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source="store",
            batch_id=target.batch_id,
            trigger="validate",
        )
        delete_bars(
            conn, target.symbol, target.timeframe, [r.ts for r in screened.rejected if r.ts is not None]
        )
    reasons: dict[str, int] = {}
    for rejected in screened.rejected:
        for expectation in rejected.failed_expectations:
            reasons[expectation] = reasons.get(expectation, 0) + 1
    gaps = gap_summary(screened.report.gaps)
    longest = gaps["longest"]
    return ValidateOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        rows_checked=screened.report.rows_checked,
        quarantined=quarantined,
        warned=len(screened.report.warnings),
        quarantine_reasons=reasons,
        missing_bars=gaps["missing"],
        gap_count=gaps["gaps"],
        longest_gap=f"{longest['bars']} bars from {longest['start'][:16]}" if longest else "",
        docs_path=str(screened.report.docs_path or ""),
    )


@dataclass(frozen=True)
class Released:
    """A quarantined row that a person released and that is now a stored bar."""

    id: int
    symbol: str
    timeframe: str
    ts: pd.Timestamp


def _bar_from_entry(entry: QuarantineEntry) -> pd.DataFrame:
    if entry.ts is None or not all(c in entry.row for c in BAR_COLUMNS):
        raise InputError(
            f"quarantine row {entry.id} cannot become a bar ({entry.reasons}); "
            "fix the source file and ingest it again, or drop the row"
        )
    values = {c: float(entry.row[c]) for c in BAR_COLUMNS}
    return canonical_bars(pd.DataFrame(values, index=pd.DatetimeIndex([entry.ts], name="ts")))


def release_quarantined(
    engine: Engine, ids: Sequence[int], *, settings: Settings, actor: str, note: str = ""
) -> list[Released]:
    """Release quarantined rows: re-run the suite with each row's failed expectations waived.

    A row that passes with its waivers is stored in ``bars``; the decision is logged in
    ``audit_log`` and the re-validation in ``validation_results``. All or nothing.

    Raises:
        LookupError: an unknown id. ValueError: a row already decided.
        InputError: a row that cannot become a bar, or fails other expectations; nothing is written.
    """
    policy = policy_for(settings)
    with engine.connect() as conn:
        entries = get_quarantine(conn, ids)
        assets = {a.symbol: a for a in list_assets(conn)}
        decided = [e for e in entries if e.status != "quarantined"]
        if decided:
            raise InputError(
                "already decided: "
                + ", ".join(f"{e.id} ({e.status})" for e in decided)
                + "; nothing was changed"
            )
        plans = []
        for entry in entries:
            bar = _bar_from_entry(entry)
            asset = assets.get(entry.symbol)
            if asset is None:
                raise InputError(f"quarantine row {entry.id}: {entry.symbol} is not a registered asset")
            lookback = policy.return_bound(asset.asset_class.value, entry.timeframe).window + 2
            history = history_before(conn, entry.symbol, entry.timeframe, bar.index[0], lookback)
            screened = screen(
                bar,
                symbol=entry.symbol,
                timeframe=entry.timeframe,
                calendar=asset.calendar,
                asset_class=asset.asset_class.value,
                policy=policy,
                history=history,
                waived={bar.index[0]: entry.failed_expectations},
                docs=None,
            )
            if screened.rejected:
                raise InputError(
                    f"quarantine row {entry.id} still fails with its expectations waived: "
                    f"{screened.rejected[0].reasons}; nothing was changed"
                )
            plans.append((entry, screened))
    batch_id = uuid.uuid4().hex
    with engine.begin() as conn:
        for entry, screened in plans:
            upsert_bars(conn, entry.symbol, entry.timeframe, screened.good, source=entry.source)
            record_screen(
                conn,
                screened,
                symbol=entry.symbol,
                timeframe=entry.timeframe,
                source=entry.source,
                batch_id=batch_id,
                trigger="release",
            )
        decide_quarantine(conn, [e.id for e, _ in plans], status="released", actor=actor, note=note)
    return [Released(id=e.id, symbol=e.symbol, timeframe=e.timeframe, ts=s.good.index[0]) for e, s in plans]


def drop_quarantined(engine: Engine, ids: Sequence[int], *, actor: str, note: str = "") -> None:
    """Mark quarantined rows as dropped (a person's decision, logged). Nothing reaches ``bars``.

    Raises:
        LookupError: an unknown id. InputError: a row already decided; nothing is written.
    """
    try:
        with engine.begin() as conn:
            decide_quarantine(conn, ids, status="dropped", actor=actor, note=note)
    except ValueError as exc:
        raise InputError(f"{exc}; nothing was changed") from None
