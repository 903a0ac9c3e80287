"""Run the validation suites on bar and feature frames with Great Expectations.

Quick start::

    from config.validation import load_validation_policy
    from expectations import validate_bars
    from market.calendars import get_calendar

    report = validate_bars(
        frame, symbol="SPX", timeframe="1d", calendar=get_calendar("XNYS"),
        asset_class="index", policy=load_validation_policy(),
    )
    report.success                 # no critical failure
    report.failures                # {row position: [expectation ids]}: rows to quarantine
    report.reasons(17)             # ['prices_positive: price <= 0 or not finite', ...]

How a run works
    1. The suite is read from ``expectations/suites/<name>.json`` (see :func:`load_suite`).
    2. The frame is copied into a validation frame with a ``RangeIndex`` (so GE's
       ``unexpected_index_list`` holds row positions of the input), its OHLCV columns as float64,
       and the derived columns of :mod:`expectations.checks` (``_on_grid``, ``_return_z``, ...).
    3. The expectations the policy does not turn ``off`` become a ``gx.ExpectationSuite`` (built
       once per suite, policy and column set, then cached) and run through GE with the
       ``COMPLETE`` result format.
    4. Each failing row is filed under ``failures`` (severity ``critical``) or ``warnings``
       (``warning``) unless a waiver covers that row and expectation.

Great Expectations contexts
    A process has one context, in memory (ephemeral), created on its first validation (never at
    import): no GE project file, suite, checkpoint or result store is shared between processes, so
    any number of them (workers, concurrent ``fks ingest`` runs) validate at once without racing
    on a mutable context. Suites and checkpoints are registered in it once per process, whatever
    the data folder. With ``docs_dir`` it also renders Data Docs, first into a staging folder of
    its own process
    (``<docs_dir>/gx/.staging/<host>-<pid>-<token>/``), then published into the one shared site
    ``<docs_dir>/gx/uncommitted/data_docs/local_site/``: each file written under a temporary name
    and renamed (``os.replace``), and the site's ``index.html`` (the newest validation pages from
    the site's page list, newest first: :mod:`expectations.docs_site`) rewritten the same way, so
    a reader never sees half a page and concurrent writers never lose one another's pages.
    ``ValidationReport.docs_path`` is the published page. A new docs folder costs the process a
    staging folder and a site builder, not a context.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from config.validation import Severity, ValidationPolicy
from expectations import checks
from expectations.docs_site import STATIC_COMPLETE, record_pages, site_index, write_atomically
from market.bars import BAR_COLUMNS, Timeframe, as_utc
from market.calendars import Calendar, GapReport, find_gaps

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_DATASOURCE = "fks"
_ASSET = "frames"
_BATCH = "whole_frame"
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


# ---------------------------------------------------------------------------------------------
# Suites


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a suite file.

    Attributes:
        id: FKS's name for it, used by the policy, waivers and reports.
        type: the Great Expectations class name (``ExpectColumnValuesToBeBetween``, ...).
        kwargs: keyword arguments of that class.
        reason: what a failure means, in words.
        columns: when given, the expectation runs once per column (``column=...`` added).
        column_pattern: when given, it runs once per frame column matching this regular
            expression (none matching: it is not run and passes).
    """

    id: str
    type: str
    kwargs: dict[str, Any]
    reason: str
    columns: tuple[str, ...] | None = None
    column_pattern: str | None = None

    def gx_kwargs(self, frame_columns: Collection[str]) -> list[dict[str, Any]]:
        """The kwargs of each GE expectation this entry becomes for a frame with ``frame_columns``."""
        if self.columns is not None:
            return [{**self.kwargs, "column": c} for c in self.columns]
        if self.column_pattern is not None:
            pattern = re.compile(self.column_pattern)
            return [{**self.kwargs, "column": c} for c in frame_columns if pattern.search(c)]
        return [dict(self.kwargs)]


@dataclass(frozen=True)
class SuiteSpec:
    """A versioned suite file: ``{"name", "version", "description", "expectations": [...]}``."""

    name: str
    version: int
    expectations: tuple[ExpectationSpec, ...]
    description: str = ""
    path: Path | None = None

    def ids(self) -> list[str]:
        """The expectation ids, in file order."""
        return [e.id for e in self.expectations]


@lru_cache(maxsize=16)
def load_suite(name_or_path: str | Path) -> SuiteSpec:
    """Read a suite: a shipped name (``bars``, ``features``) or the path of a JSON file.

    Raises:
        ValueError: the file is missing or not JSON, an entry lacks ``id``/``type``, an id
            repeats, or ``type`` is not a Great Expectations expectation class; the message
            names the file and the entry.
    """
    import great_expectations.expectations as gxe

    path = Path(name_or_path)
    if path.suffix != ".json":
        path = SUITES_DIR / f"{name_or_path}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.json")))
        raise ValueError(f"{path}: no such suite; shipped suites: {known}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise ValueError(f"{path}: expected an object with name, version and an expectations list")
    specs: list[ExpectationSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw["expectations"], start=1):
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("type"):
            raise ValueError(f"{path}: expectation #{i} needs an 'id' and a 'type'")
        eid, etype = str(entry["id"]), str(entry["type"])
        if eid in seen:
            raise ValueError(f"{path}: expectation id {eid!r} appears twice; ids must be unique")
        seen.add(eid)
        if not isinstance(getattr(gxe, etype, None), type):
            raise ValueError(
                f"{path}: expectation {eid!r} has type {etype!r}, which is not a Great Expectations "
                "expectation class (e.g. ExpectColumnValuesToBeBetween)"
            )
        columns = entry.get("columns")
        specs.append(
            ExpectationSpec(
                id=eid,
                type=etype,
                kwargs=dict(entry.get("kwargs", {})),
                reason=str(entry.get("reason", eid)),
                columns=tuple(columns) if columns is not None else None,
                column_pattern=entry.get("column_pattern"),
            )
        )
    return SuiteSpec(
        name=str(raw.get("name", path.stem)),
        version=int(raw.get("version", 1)),
        expectations=tuple(specs),
        description=str(raw.get("description", "")),
        path=path,
    )


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation of the suite fared.

    ``unexpected_count`` counts failing rows (for an expectation run over several columns, rows
    failing on any of them); table-level expectations report 0 and only ``success``.
    """

    id: str
    type: str
    severity: str
    success: bool
    unexpected_count: int
    reason: str


@dataclass(frozen=True)
class ValidationReport:
    """The result of validating one frame.

    Attributes:
        suite, suite_version: the suite file that ran.
        rows_checked: rows of the validated frame (history rows not included).
        failures: row position in the frame -> ids of failed ``critical`` expectations; these
            rows are to be quarantined.
        warnings: row position -> ids of failed ``warning`` expectations; kept, only reported.
        outcomes: one entry per expectation that ran (severity not ``off``), in suite order.
        gaps: missing bars against the calendar (reported, never row failures).
        docs_path: the Data Docs page of this validation when ``docs_dir`` was given, else None.
    """

    suite: str
    suite_version: int
    rows_checked: int
    failures: dict[int, list[str]]
    warnings: dict[int, list[str]]
    outcomes: list[ExpectationOutcome]
    gaps: GapReport
    docs_path: Path | None = None
    _reasons: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def success(self) -> bool:
        """True when no row failed a critical expectation and every critical table check passed."""
        return not self.failures and all(
            o.success for o in self.outcomes if o.severity == Severity.CRITICAL.value
        )

    @property
    def failed_positions(self) -> list[int]:
        """Sorted row positions with a critical failure (the rows to quarantine)."""
        return sorted(self.failures)

    def reasons(self, position: int) -> list[str]:
        """Human reasons why row ``position`` failed or warned: ``'<id>: <reason>'`` each.

        Warnings are prefixed ``warning: ``. Empty for a clean row.
        """
        out = [f"{eid}: {self._reasons.get(eid, eid)}" for eid in self.failures.get(position, [])]
        out += [f"warning: {eid}: {self._reasons.get(eid, eid)}" for eid in self.warnings.get(position, [])]
        return out


# ---------------------------------------------------------------------------------------------
# Great Expectations contexts


_SHARED_VIEW = {"module_name": "expectations.docs_views", "class_name": "SharedEnvironmentPageView"}
"""The Data Docs page view: GE's, with one Jinja environment (compiled templates) per process."""
_SITE_NAME = "local_site"


class _DocsSite:
    """One docs folder's Data Docs, as this process writes them: a staging folder of its own that
    GE renders into (:class:`~expectations.docs_views.StaticOnceSiteBuilder`, bound to the
    process's context) and the shared site the staged pages are published into."""

    def __init__(self, context: Any, docs_dir: Path) -> None:
        from expectations.docs_views import StaticOnceSiteBuilder

        token = f"{_path_safe(socket.gethostname())}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.staging = docs_dir / "gx" / ".staging" / token
        self.staging.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, self.staging, True)  # the process's own folder, gone with it
        self.site = docs_dir / "gx" / "uncommitted" / "data_docs" / _SITE_NAME
        self.builder = StaticOnceSiteBuilder(
            data_context=context,
            store_backend={
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(self.staging) + os.sep,
            },
            site_name=_SITE_NAME,
            site_index_builder={"class_name": "DefaultSiteIndexBuilder"},
            site_section_builders={
                "expectations": {"view": _SHARED_VIEW},
                "validations": {"view": _SHARED_VIEW},
                "profiling": "None",  # FKS profiles nothing
            },
        )

    def build(self, resources: list[Any], page_of: Any) -> Path | None:
        """Render ``resources``' pages (no GE index) into the staging folder and return where the
        page of ``page_of`` was staged."""
        self.builder.build(resource_identifiers=resources, build_index=False)
        url = self.builder.get_resource_url(resource_identifier=page_of, only_if_exists=True)
        if url and url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
        return None

    def publish(self, staged_page: Path | None) -> Path:
        """Move what the last build staged into the shared site (each file atomically), add its
        validation pages to the site's page list, rewrite the shared index, and return where
        ``staged_page`` now is."""
        staging, site = self.staging, self.site
        pages: list[Path] = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            relative = path.relative_to(staging)
            if relative == Path("index.html"):
                continue  # this process's index knows only its own pages: the shared one is rebuilt
            target = site / relative
            if relative.parts[0] == "static" and (target.exists() or relative.name == STATIC_COMPLETE):
                continue  # the same stylesheet, fonts and images in every build
            write_atomically(target, path.read_bytes())
            if relative.parts[0] == "validations" and relative.suffix == ".html":
                pages.append(relative)
        published = site / staged_page.relative_to(staging) if staged_page is not None else None
        for built in staging.iterdir():  # all published: the staging folder starts empty, but for
            if built.name == "static":  # GE's static assets, kept for the next build
                continue
            if built.is_dir():
                shutil.rmtree(built, ignore_errors=True)
            else:
                built.unlink(missing_ok=True)
        record_pages(site, pages)
        write_atomically(site / "index.html", site_index(site).encode("utf-8"))
        return published if published is not None and published.exists() else site / "index.html"


class _GxEngine:
    """The one in-memory GE context of this process, its cached suites and checkpoints, and a
    :class:`_DocsSite` per docs folder it has rendered Data Docs for (a new folder costs a staging
    folder and a site builder, not a new context with its suites registered again)."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context: Any = gx.get_context(mode="ephemeral")
        self.context.config.analytics_enabled = False
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas(_DATASOURCE)
        asset = source.add_dataframe_asset(_ASSET)
        self.batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH)
        self._suites: dict[str, Any] = {}
        self._checkpoints: dict[str, Any] = {}
        self._sites: dict[Path, _DocsSite] = {}
        self.lock = threading.Lock()

    def suite(self, name: str, configs: list[tuple[str, str, dict[str, Any]]]) -> Any:
        """The GE suite of ``configs`` ((fks id, GE type, kwargs) each), built and registered in the
        context once, then cached."""
        import great_expectations as gx
        import great_expectations.expectations as gxe

        digest = hashlib.sha1(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()[:10]
        key = f"{name}_{digest}"
        cached = self._suites.get(key)
        if cached is not None:
            return cached
        suite = gx.ExpectationSuite(name=key)
        for fks_id, etype, kwargs in configs:
            suite.add_expectation(getattr(gxe, etype)(**kwargs, meta={"fks_id": fks_id}))
        suite = self.context.suites.add_or_update(suite)
        self._suites[key] = suite
        return suite

    def docs_site(self, docs_dir: Path) -> _DocsSite:
        """The Data Docs of ``docs_dir`` (resolved), set up on first use."""
        site = self._sites.get(docs_dir)
        if site is None:
            site = self._sites[docs_dir] = _DocsSite(self.context, docs_dir)
        return site

    def run(
        self, suite: Any, frame: pd.DataFrame, *, docs_dir: Path | None = None, asset: str = "", run: str = ""
    ) -> tuple[list[Any], Path | None]:
        """Validate ``frame`` with ``suite``: the per-expectation results, and with ``docs_dir`` the
        published docs page, which names the data ``asset`` (the series) and the ``run``."""
        if docs_dir is None:
            from great_expectations.validator.v1_validator import Validator

            validator = Validator(
                batch_definition=self.batch_definition,
                batch_parameters={"dataframe": frame},
                result_format=_RESULT_FORMAT,
            )
            return list(validator.validate_expectation_suite(suite).results), None
        return self._run_with_docs(self.docs_site(docs_dir), suite, frame, asset=asset, run=run)

    def _checkpoint(self, suite: Any) -> Any:
        """The checkpoint validating ``suite`` on the pandas batch, registered once."""
        import great_expectations as gx

        checkpoint = self._checkpoints.get(suite.name)
        if checkpoint is None:
            definition = self.context.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=suite.name, data=self.batch_definition, suite=suite)
            )
            checkpoint = self.context.checkpoints.add_or_update(
                gx.Checkpoint(
                    name=suite.name,
                    validation_definitions=[definition],
                    actions=[],  # the docs are built below, once the result names its series
                    result_format=_RESULT_FORMAT,
                )
            )
            self._checkpoints[suite.name] = checkpoint
        return checkpoint

    def _run_with_docs(
        self, site: _DocsSite, suite: Any, frame: pd.DataFrame, *, asset: str, run: str
    ) -> tuple[list[Any], Path | None]:
        import datetime as dt

        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
        )

        run_id = RunIdentifier(run_name=_path_safe(run) or None, run_time=dt.datetime.now(dt.UTC))
        outcome = self._checkpoint(suite).run(batch_parameters={"dataframe": frame}, run_id=run_id)
        results: list[Any] = []
        page: Path | None = None
        for result_id, suite_result in outcome.run_results.items():
            results.extend(suite_result.results)
            if asset:  # one dataframe asset serves every series: the page is told which one this is
                spec = dict(suite_result.meta.get("batch_spec") or {})
                suite_result.meta["batch_spec"] = {**spec, "data_asset_name": asset}
                suite_result.meta["fks_series"] = asset
                suite_result.meta["fks_run"] = run
            self.context.validation_results_store.set(result_id, suite_result)
            # this result's page, and the suite's page when the shared site lacks it (the same
            # page every time); no GE index: ``publish`` writes the shared site's own
            resources: list[Any] = [result_id]
            if not (site.site / "expectations" / f"{suite.name}.html").exists():
                resources.append(ExpectationSuiteIdentifier(name=suite.name))
            page = site.build(resources, result_id) or page
            # the in-memory store only feeds this page: drop the result so the process stays small
            self.context.validation_results_store.remove_key(result_id)
        return results, site.publish(page)


def _path_safe(text: str) -> str:
    """``text`` as one path segment of a Data Docs URL: letters, digits, ``_``, ``.``, ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def new_validation_run() -> str:
    """A name for a validation run nobody named: ``validation-<YYYYmmddTHHMMSS>-<8 hex digits>`` (UTC)."""
    import uuid

    return f"validation-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


_ENGINES: dict[int, _GxEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine() -> _GxEngine:
    """This process's context (keyed by the pid: a forked child makes its own)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(os.getpid())
        if engine is None:
            engine = _ENGINES[os.getpid()] = _GxEngine()
        return engine


# ---------------------------------------------------------------------------------------------
# Running a suite


def _run_suite(
    spec: SuiteSpec,
    gx_frame: pd.DataFrame,
    *,
    policy: ValidationPolicy,
    ts: pd.DatetimeIndex | None,
    waived: Mapping[pd.Timestamp, Collection[str]] | None,
    gaps: GapReport,
    docs_dir: Path | None,
    label: str = "",
    asset: str = "",
    run: str = "",
) -> ValidationReport:
    suite_policy = policy.suite(spec.name)
    unknown = sorted(set(suite_policy.severity) - set(spec.ids()))
    if unknown:
        raise ValueError(
            f"the validation policy names expectation(s) {', '.join(unknown)} that suite "
            f"{spec.name!r} v{spec.version} does not have; its ids are {', '.join(spec.ids())}"
        )
    active = [e for e in spec.expectations if suite_policy.severity_of(e.id) is not Severity.OFF]
    configs = [(e.id, e.type, kw) for e in active for kw in e.gx_kwargs(list(gx_frame.columns))]
    engine = _engine()
    folder = docs_dir.resolve() if docs_dir is not None else None
    with engine.lock:
        suite = engine.suite(f"{spec.name}_v{spec.version}", configs)
        results: list[Any] = []
        page: Path | None = None
        if configs:
            results, page = engine.run(suite, gx_frame, docs_dir=folder, asset=asset, run=run)

    failed_rows: dict[str, set[int]] = {e.id: set() for e in active}
    success: dict[str, bool] = {e.id: True for e in active}
    for res in results:
        fks_id = (res.expectation_config.meta or {}).get("fks_id")
        if fks_id not in success:
            continue
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"{label or spec.name}: expectation {fks_id!r} of suite {spec.name!r} could not run: "
                f"{res.exception_info.get('exception_message')}"
            )
        success[fks_id] = success[fks_id] and bool(res.success)
        index_list = (res.result or {}).get("unexpected_index_list") or []
        failed_rows[fks_id].update(int(i) for i in index_list)

    waivers = _waiver_positions(ts, waived) if ts is not None else {}
    failures: dict[int, list[str]] = {}
    warnings: dict[int, list[str]] = {}
    outcomes: list[ExpectationOutcome] = []
    for e in active:
        severity = suite_policy.severity_of(e.id)
        target = failures if severity is Severity.CRITICAL else warnings
        rows = failed_rows[e.id]
        for pos in sorted(rows):
            if e.id in waivers.get(pos, ()):
                continue
            target.setdefault(pos, []).append(e.id)
        outcomes.append(
            ExpectationOutcome(
                id=e.id,
                type=e.type,
                severity=severity.value,
                success=success[e.id],
                unexpected_count=len(rows),
                reason=e.reason,
            )
        )
    return ValidationReport(
        suite=spec.name,
        suite_version=spec.version,
        rows_checked=len(gx_frame),
        failures=dict(sorted(failures.items())),
        warnings=dict(sorted(warnings.items())),
        outcomes=outcomes,
        gaps=gaps,
        docs_path=page,
        _reasons={e.id: e.reason for e in spec.expectations},
    )


def _waiver_positions(
    ts: pd.DatetimeIndex, waived: Mapping[pd.Timestamp, Collection[str]] | None
) -> dict[int, set[str]]:
    if not waived:
        return {}
    out: dict[int, set[str]] = {}
    values = ts.as_unit("ns").asi8
    for stamp, ids in waived.items():
        when = as_utc(stamp, "waived bar time")
        for pos in np.flatnonzero(values == when.as_unit("ns").value):
            out.setdefault(int(pos), set()).update(ids)
    return out


def _utc_index(values: Any) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, errors="coerce"))
    return index.as_unit("ns")


def _bars_input(frame: pd.DataFrame) -> pd.DataFrame:
    if "ts" not in frame.columns:
        if frame.index.name == "ts":
            frame = frame.reset_index()
        else:
            raise ValueError(
                "bar frame has no 'ts' column (nor an index named ts); "
                "pass bars with a UTC 'ts' column and open, high, low, close, volume"
            )
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"bar frame lacks column(s) {', '.join(missing)}; expected ts, {', '.join(BAR_COLUMNS)}"
        )
    return frame


def _fit_for_returns(close: np.ndarray, ts_ns: np.ndarray, unique: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(close) & (close > 0) & (ts_ns != np.iinfo(np.int64).min) & unique


def validate_bars(
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    calendar: Calendar,
    asset_class: str,
    policy: ValidationPolicy,
    now: pd.Timestamp | None = None,
    history: pd.DataFrame | None = None,
    waived: Mapping[pd.Timestamp, Collection[str]] | None = None,
    docs_dir: Path | None = None,
    splits: Mapping[pd.Timestamp, float] | None = None,
    run: str | None = None,
) -> ValidationReport:
    """Validate bars of one symbol at one timeframe with the ``bars`` suite.

    Args:
        frame: the bars to check: a ``ts`` column (or index) of UTC timestamps (naive ones are
            taken as UTC; they may repeat or be out of order) and columns ``open, high, low,
            close, volume`` (numbers; NaN, inf, negatives and even strings are reported, not
            raised). Row positions in the report are positions in this frame.
        symbol: the symbol, for messages.
        timeframe: ``1m``, ``1h`` or ``1d``.
        calendar: the asset's trading calendar (:func:`market.calendars.get_calendar`).
        asset_class: ``equity``, ``etf``, ``index``, ``fx`` or ``crypto``: picks the return bound.
        policy: severities and return bounds (:func:`config.validation.load_validation_policy`).
        now: bars opening after it fail ``ts_not_future``; default the current UTC time.
        history: earlier stored bars of the same series (canonical frame, ``ts`` index or
            column). They give the return check its past; they are never reported. A history
            bar at a timestamp that ``frame`` also holds is replaced by the frame's bar.
        waived: timestamp -> expectation ids a person released for that bar; those ids are not
            reported for rows at that timestamp.
        docs_dir: when given, the result is stored in a Great Expectations file context in
            this folder and its Data Docs page built; ``ValidationReport.docs_path`` points at it.
        splits: recorded splits of the symbol, ex-date (UTC) -> ratio (``2.0`` for 2-for-1):
            a jump by that ratio on that bar is an unadjusted split (``split_unadjusted``, a
            warning), not an error (``split_like``).
        run: the run this validation belongs to (``"ingest run 12"``), named on its Data Docs
            page with the series (``"<symbol> <timeframe> bars, <run>"`` as the data asset, the
            run as GE's run name); default a fresh :func:`new_validation_run` name.

    Returns:
        A :class:`ValidationReport`. Gaps against the calendar are in ``gaps``, never failures.

    Raises:
        ValueError: a required column is missing, the timeframe or asset class is unknown, or
            the policy names an expectation the suite lacks.
    """
    tf = Timeframe.parse(timeframe)
    spec = load_suite("bars")
    frame = _bars_input(frame)
    n = len(frame)
    ts = _utc_index(frame["ts"])
    ts_ns = ts.asi8
    data: dict[str, Any] = {"ts": ts}
    numeric_ok = np.ones(n, dtype=bool)
    for col in BAR_COLUMNS:
        values, bad = checks.coerce_numeric(frame[col])
        data[col] = values
        numeric_ok &= ~bad
    o, h, lo, c, v = (data[col] for col in BAR_COLUMNS)
    data["_numeric"] = numeric_ok
    data["_oc_max"] = np.fmax(o, c)
    data["_oc_min"] = np.fmin(o, c)
    unique = checks.ts_unique(ts_ns, np.column_stack([o, h, lo, c, v]))
    data["_ts_unique"] = unique
    data["_ts_in_order"] = checks.ts_in_order(ts_ns)
    now_ts = pd.Timestamp.now(tz="UTC") if now is None else as_utc(now, "now")
    data["_not_future"] = (ts_ns == np.iinfo(np.int64).min) | (ts_ns <= now_ts.as_unit("ns").value)
    on_grid, on_cal, in_span = checks.on_grid_and_calendar(ts, tf, calendar)
    data["_on_grid"] = on_grid
    data["_on_calendar"] = on_cal
    data["_in_span"] = in_span
    flags = _return_columns(ts_ns, c, unique, tf, asset_class, policy, history, splits)
    data["_return_z"] = flags.z
    data["_ceiling_z"] = flags.ceiling_z
    data["_spike"] = flags.spike
    data["_split_like"] = flags.split_like
    data["_split_unadjusted"] = flags.split_unadjusted
    data["_stale"] = flags.stale
    gx_frame = pd.DataFrame(data, index=pd.RangeIndex(n))
    run = run or new_validation_run()

    good_ts = ts[~np.asarray(ts.isna()) & on_grid & on_cal & in_span & data["_not_future"]]
    gaps = find_gaps(good_ts.unique().sort_values(), calendar, tf)
    return _run_suite(
        spec,
        gx_frame,
        policy=policy,
        ts=ts,
        waived=waived,
        gaps=gaps,
        docs_dir=docs_dir,
        label=f"{symbol} {tf.value}",
        asset=f"{symbol} {tf.value} bars, {run}",
        run=run,
    )


def _return_columns(
    ts_ns: np.ndarray,
    close: np.ndarray,
    unique: np.ndarray,
    tf: Timeframe,
    asset_class: str,
    policy: ValidationPolicy,
    history: pd.DataFrame | None,
    splits: Mapping[pd.Timestamp, float] | None = None,
) -> checks.ReturnFlags:
    bound = policy.return_bound(asset_class, tf.value)
    params = checks.ReturnParams(
        window=bound.window,
        k=bound.k,
        floor=bound.floor,
        min_periods=policy.returns.min_periods,
        spike_reversion=policy.returns.spike_reversion,
        spike_k=bound.spike_k,
        spike_floor=bound.spike_floor,
        ceiling=bound.ceiling,
        split_ratios=tuple(policy.returns.split_ratios),
        split_tolerance=policy.returns.split_tolerance,
        stale_run=bound.stale_run,
    )
    n = len(close)
    fit = _fit_for_returns(close, ts_ns, unique)
    pos = np.flatnonzero(fit)
    pos = pos[np.argsort(ts_ns[pos], kind="stable")]
    hist_ts = np.empty(0, dtype=np.int64)
    hist_close = np.empty(0, dtype="float64")
    if history is not None and len(history):
        hist = history.reset_index() if "ts" not in history.columns else history
        h_ts = _utc_index(hist["ts"]).asi8
        h_close = pd.to_numeric(hist["close"], errors="coerce").to_numpy(dtype="float64")
        keep = _fit_for_returns(h_close, h_ts, np.ones(len(h_ts), dtype=bool)) & ~np.isin(h_ts, ts_ns[pos])
        if len(pos):
            keep &= h_ts < ts_ns[pos].max()
        order = np.argsort(h_ts[keep], kind="stable")
        hist_ts, hist_close = h_ts[keep][order], h_close[keep][order]
        # keep only the context the rolling window needs, plus the bars interleaved with the batch
        first = ts_ns[pos].min() if len(pos) else np.iinfo(np.int64).max
        before = np.flatnonzero(hist_ts < first)
        cut = max(len(before) - (bound.window * 3 + 2), 0)
        hist_ts, hist_close = hist_ts[cut:], hist_close[cut:]
    all_ts = np.concatenate([hist_ts, ts_ns[pos]])
    all_close = np.concatenate([hist_close, close[pos]])
    is_batch = np.concatenate([np.zeros(len(hist_ts), dtype=bool), np.ones(len(pos), dtype=bool)])
    owner = np.concatenate([np.full(len(hist_ts), -1), pos])
    order = np.argsort(all_ts, kind="stable")
    all_ts, all_close, is_batch, owner = all_ts[order], all_close[order], is_batch[order], owner[order]
    out = checks.ReturnFlags(
        z=np.full(n, np.nan),
        ceiling_z=np.full(n, np.nan),
        spike=np.zeros(n, dtype=bool),
        split_like=np.zeros(n, dtype=bool),
        split_unadjusted=np.zeros(n, dtype=bool),
        stale=np.zeros(n, dtype=bool),
    )
    if not is_batch.any():
        return out
    split_at = np.full(len(all_ts), np.nan)
    for when, ratio in (splits or {}).items():
        split_at[all_ts == _utc_index([when]).asi8[0]] = float(ratio)
    first_checked = int(np.argmax(is_batch))
    flags = checks.return_scores(np.log(all_close), first_checked, params, split_at)
    tail_batch = is_batch[first_checked:]
    tail_owner = owner[first_checked:][tail_batch]
    for name in ("z", "ceiling_z", "spike", "split_like", "split_unadjusted", "stale"):
        getattr(out, name)[tail_owner] = getattr(flags, name)[tail_batch]
    return out


def validate_features(
    frame: pd.DataFrame,
    warmup: int,
    *,
    policy: ValidationPolicy | None = None,
    docs_dir: Path | None = None,
    series: str | None = None,
    run: str | None = None,
) -> ValidationReport:
    """Validate a feature frame with the ``features`` suite.

    Checks: no null in any numeric column after the first ``warmup`` rows; no infinite value
    anywhere; bounded indicators in range by column name (``rsi*`` and ``stoch*``/``mfi*`` in
    [0, 100], ``williams_r*`` in [-100, 0], ``atr*``/``volatility*``/... >= 0).

    Args:
        frame: one row per bar, numeric feature columns (other columns are ignored); row
            positions in the report are positions in this frame.
        warmup: leading rows allowed to hold nulls (indicator warm-up), >= 0.
        policy: severities (``suites.features``); default the shipped policy file.
        docs_dir: as in :func:`validate_bars`.
        series: what the frame is, for its Data Docs page (``"SPX 1d features core_v1"``).
        run: as in :func:`validate_bars`; the page's data asset is ``"<series>, <run>"``.

    Raises:
        ValueError: ``warmup`` is negative.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 rows, got {warmup}")
    if policy is None:
        from config.validation import load_validation_policy

        policy = load_validation_policy()
    spec = load_suite("features")
    numeric = frame.select_dtypes(include=["number", "bool"]).astype("float64")
    numeric.columns = pd.Index([str(c) for c in numeric.columns])
    numeric = numeric.loc[:, [c for c in numeric.columns if not c.startswith("_")]]
    values = numeric.to_numpy(dtype="float64")
    n = len(frame)
    complete = ~np.isnan(values).any(axis=1) if values.size else np.ones(n, dtype=bool)
    complete[: min(warmup, n)] = True
    finite = ~np.isinf(values).any(axis=1) if values.size else np.ones(n, dtype=bool)
    gx_frame = numeric.reset_index(drop=True)
    gx_frame["_complete"] = complete
    gx_frame["_finite"] = finite
    empty = GapReport(expected=0, present=0, missing=0, off_calendar=0)
    run = run or new_validation_run()
    return _run_suite(
        spec,
        gx_frame,
        policy=policy,
        ts=None,
        waived=None,
        gaps=empty,
        docs_dir=docs_dir,
        label=series or "",
        asset=f"{series or 'features'}, {run}",
        run=run,
    )
