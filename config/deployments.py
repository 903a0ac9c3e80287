"""The Prefect deployments of FKS, declared once: ``prefect.yaml`` is generated from them
(:func:`render_prefect_yaml`; a test checks the shipped file is what they generate) and
``fks deploy --apply`` creates them on a Prefect server from the same objects.

What is declared (:func:`declare_deployments`):

- ``ingest/<timeframe>-<calendar>``: one per timeframe and calendar of the asset registry
  (``config/assets.yaml``), on that calendar: minute series every minute and hourly series five
  minutes after each bar closes (on an exchange, within its session hours and trading weekdays, in
  its time zone), daily series 30 minutes after the close of their exchange (XNYS 16:30 New York
  on weekdays, FX 17:30 New York on weekdays, crypto 00:30 UTC). The parameters list the
  group's enabled assets; a group with none enabled is declared paused (its online assets listed):
  enable them in the registry, or resume the deployment once its providers are configured. One run
  at a time per deployment (``CANCEL_NEW``): a series belongs to one group, so one ingest per series.
- ``validate/nightly`` and ``backfill/gaps-nightly``: re-validation of the stored bars and the
  repair of the holes ``fks gaps`` lists (``fks backfill --gaps``), every night.
- ``retrain/forecaster-weekly`` and ``retrain/allocator-weekly``: training, evaluation and the
  promotion gate, on Saturdays; both on the ``training`` work queue, whose concurrency limit of 1
  keeps to one training at a time (also for runs the retraining check starts).
- ``check-retraining/hourly``: input drift of the served forecaster and the paper account's live
  performance against the ``FKS_RETRAIN_*`` thresholds; starts ``retrain/forecaster-weekly`` when
  one is crossed.
- ``execute/paper``: the paper desk's cycle after each XNYS close; declared paused until an
  account is configured (``fks deploy --apply --account NAME`` resumes it).

Only pydantic and the asset registry are used here; nothing talks to Prefect (that is
``flows/cli/deploy.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import time
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from config.assets import AssetSpec

__all__ = [
    "DEFAULT_POOL",
    "PREFECT_YAML_HEADER",
    "PROJECT_DIR_ENV",
    "ConcurrencySpec",
    "DeploymentSpec",
    "ScheduleSpec",
    "WorkQueueSpec",
    "close_schedule",
    "declare_deployments",
    "job_variables",
    "prefect_yaml",
    "render_prefect_yaml",
    "work_queues",
]

DEFAULT_POOL = "fks"
"""The work pool every deployment runs on unless ``fks deploy --pool`` names another."""

PROJECT_DIR_ENV = "FKS_PROJECT_DIR"
"""The environment variable naming the FKS checkout a flow run works in: the deployments' pull
step changes to it (``fks worker`` sets it to its checkout; the image sets it to ``/opt/fks``)."""

PULL_STEPS: list[dict[str, Any]] = [
    {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $" + PROJECT_DIR_ENV + " }}"}}
]
"""Every deployment's pull step: the code comes from the project directory, never from a download."""

RESULTS_ENV = {"PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true"}
"""Flow and task results are persisted (``fks worker`` points Prefect's result storage at the lake)."""


def job_variables() -> dict[str, Any]:
    """Every deployment's job variables: :data:`RESULTS_ENV` in the flow run's environment."""
    return {"env": dict(RESULTS_ENV)}


PREFECT_YAML_HEADER = (
    "# Generated from config/deployments.py by `fks deploy --write`: edit the declarations, not this\n"
    "# file (tests/unit/test_deployments.py checks that they agree). `fks deploy --apply` creates the\n"
    "# same deployments; `prefect deploy --all` reads this file (set FKS_PROJECT_DIR on the workers).\n"
)


class ScheduleSpec(BaseModel):
    """A cron schedule in a time zone (Prefect's ``CronSchedule``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str
    timezone: str = "UTC"
    active: bool = True


class ConcurrencySpec(BaseModel):
    """A deployment's concurrency limit and what happens to a run beyond it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1)
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


class WorkQueueSpec(BaseModel):
    """A work queue of the pool; ``concurrency_limit`` caps the runs it lets out at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    concurrency_limit: int | None = None
    priority: int = 1


class DeploymentSpec(BaseModel):
    """One deployment: a flow (``flow`` is its Prefect name, ``entrypoint`` where the worker loads
    it) with its parameters, schedules, tags, work queue and concurrency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: str
    name: str
    entrypoint: str
    description: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: tuple[ScheduleSpec, ...] = ()
    tags: tuple[str, ...] = ()
    work_queue: str = "default"
    concurrency: ConcurrencySpec | None = None
    paused: bool = False

    @property
    def full_name(self) -> str:
        """``flow/name``, as ``prefect deployment run`` and ``run_deployment`` take it."""
        return f"{self.flow}/{self.name}"


def work_queues() -> list[WorkQueueSpec]:
    """The work queues of the FKS pool."""
    return [
        WorkQueueSpec(name="default", description="Validation, repairs, checks and the paper desk."),
        WorkQueueSpec(name="ingest", description="Scheduled ingestion (one run per deployment at a time)."),
        WorkQueueSpec(
            name="training",
            description="Retraining, evaluation and the promotion gate: one at a time.",
            concurrency_limit=1,
        ),
    ]


# -- calendars ---------------------------------------------------------------------------------

_CLOSES: dict[str, tuple[str, time, str]] = {
    "24/7": ("UTC", time(0, 0), "*"),
    "24/5": ("America/New_York", time(17, 0), "1-5"),
}
"""Calendars that exchange-calendars does not know: (time zone, daily close, cron weekdays)."""


def _exchange_session(calendar: str) -> tuple[str, time, time, str]:
    """An exchange calendar's (time zone, regular open, regular close, cron weekdays)."""
    import exchange_calendars as xcals

    try:
        cal = xcals.get_calendar(calendar)
    except Exception as exc:  # InvalidCalendarName and friends
        raise ValueError(
            f"unknown calendar {calendar!r} in the asset registry: use 24/7, 24/5 or an "
            "exchange-calendars name such as XNYS"
        ) from exc
    mask = str(getattr(cal, "weekmask", "1111100"))  # Monday first
    days = [(i + 1) % 7 for i, flag in enumerate(mask) if flag == "1"]  # cron: Sunday 0, Monday 1
    weekdays = "1-5" if days == [1, 2, 3, 4, 5] else ",".join(str(d) for d in sorted(days))
    return str(cal.tz), cal.open_times[-1][1], cal.close_times[-1][1], weekdays


def _close(calendar: str) -> tuple[str, time, str]:
    if calendar in _CLOSES:
        return _CLOSES[calendar]
    zone, _, close, weekdays = _exchange_session(calendar)
    return zone, close, weekdays


def close_schedule(calendar: str, delay_minutes: int = 30) -> ScheduleSpec:
    """A daily schedule ``delay_minutes`` after the regular close of ``calendar``, on its trading
    weekdays, in its time zone (an early close is earlier, so the run still follows it).

    Raises:
        ValueError: an unknown calendar.
    """
    zone, close, weekdays = _close(calendar)
    minutes = close.hour * 60 + close.minute + delay_minutes
    hour, minute = divmod(minutes % (24 * 60), 60)
    return ScheduleSpec(cron=f"{minute} {hour} * * {weekdays}", timezone=zone)


def _ingest_schedule(timeframe: str, calendar: str) -> ScheduleSpec:
    """Minute series every minute, hourly series five minutes after each bar closes, daily series
    30 minutes after the close; on an exchange's calendar, within its session hours and weekdays
    (hour bars are anchored at the open: XNYS's close at 10:30, 11:30, ... and the last at 16:00)."""
    if timeframe == "1d":
        return close_schedule(calendar)
    if calendar in _CLOSES:  # around the clock: runs outside the sessions find no new bar
        return ScheduleSpec(cron="* * * * *" if timeframe == "1m" else "5 * * * *")
    zone, open_, close, weekdays = _exchange_session(calendar)
    if timeframe == "1m":
        return ScheduleSpec(cron=f"* {open_.hour}-{close.hour} * * {weekdays}", timezone=zone)
    minute = (open_.minute + 5) % 60
    first = open_.hour + 1 if open_.minute + 5 < 60 else open_.hour + 2
    last = close.hour + (1 if close.minute > open_.minute else 0)
    return ScheduleSpec(cron=f"{minute} {first}-{last} * * {weekdays}", timezone=zone)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _ingest_deployments(assets: Sequence[AssetSpec]) -> list[DeploymentSpec]:
    groups: dict[tuple[str, str], list[AssetSpec]] = {}
    for asset in assets:
        groups.setdefault((asset.timeframe, asset.calendar), []).append(asset)
    order = {"1m": 0, "1h": 1, "1d": 2}
    specs = []
    for (timeframe, calendar), members in sorted(
        groups.items(), key=lambda g: (order.get(g[0][0], 9), g[0][1])
    ):
        enabled = [a.symbol for a in members if a.enabled]
        symbols = enabled or [a.symbol for a in members]
        specs.append(
            DeploymentSpec(
                flow="ingest",
                name=f"{timeframe}-{_slug(calendar)}",
                entrypoint="flows.deployed:ingest",
                description=(
                    f"Ingest the {timeframe} bars of the {calendar} assets ({', '.join(symbols)})"
                    + ("; paused: none of them is enabled in the asset registry" if not enabled else "")
                ),
                parameters={"config": {"symbols": symbols, "timeframe": timeframe}},
                schedules=(_ingest_schedule(timeframe, calendar),),
                tags=("fks", "ingest", f"timeframe:{timeframe}", f"calendar:{calendar}"),
                work_queue="ingest",
                concurrency=ConcurrencySpec(limit=1, collision_strategy="CANCEL_NEW"),
                paused=not enabled,
            )
        )
    return specs


def declare_deployments(assets: Sequence[AssetSpec], *, account: str | None = None) -> list[DeploymentSpec]:
    """Every FKS deployment (see the module docstring), the ingestion ones from ``assets``.

    ``account`` names the paper account of ``execute/paper``; without one that deployment is
    declared paused (nothing trades until an account is configured).
    """
    nightly = ScheduleSpec(cron="0 2 * * *")
    training = ("fks", "training")
    specs = _ingest_deployments(assets)
    specs += [
        DeploymentSpec(
            flow="validate",
            name="nightly",
            entrypoint="flows.deployed:validate",
            description="Re-validate every stored series; bars that now fail go to quarantine.",
            schedules=(nightly,),
            tags=("fks", "validate"),
            concurrency=ConcurrencySpec(limit=1),
        ),
        DeploymentSpec(
            flow="backfill",
            name="gaps-nightly",
            entrypoint="flows.deployed:backfill",
            description="Fetch what `fks gaps` lists: holes in stored series and failed chunks.",
            parameters={"config": {"gaps": True}},
            schedules=(ScheduleSpec(cron="30 2 * * *"),),
            tags=("fks", "backfill"),
            concurrency=ConcurrencySpec(limit=1),
        ),
        DeploymentSpec(
            flow="reconcile",
            name="nightly",
            entrypoint="flows.deployed:reconcile",
            description="Heal provisional bars (written by a fallback provider) from each asset's primary.",
            parameters={"config": {}},  # every stored online series
            schedules=(ScheduleSpec(cron="45 2 * * *"),),
            tags=("fks", "reconcile"),
            concurrency=ConcurrencySpec(limit=1),
        ),
        DeploymentSpec(
            flow="retrain",
            name="forecaster-weekly",
            entrypoint="flows.deployed:retrain",
            description="Train the forecaster, backtest it net of costs and run the promotion gate.",
            parameters={
                "config": {"family": "forecaster", "forecaster": {"symbol": "SPX", "timeframe": "1d"}}
            },
            schedules=(ScheduleSpec(cron="0 3 * * 6"),),
            tags=(*training, "family:forecaster"),
            work_queue="training",
        ),
        DeploymentSpec(
            flow="retrain",
            name="allocator-weekly",
            entrypoint="flows.deployed:retrain",
            description="Train the allocator on its universe and run the promotion gate.",
            parameters={"config": {"family": "allocator"}},
            schedules=(ScheduleSpec(cron="0 5 * * 6"),),
            tags=(*training, "family:allocator"),
            work_queue="training",
        ),
        DeploymentSpec(
            flow="check-retraining",
            name="hourly",
            entrypoint="flows.deployed:check_retraining",
            description="Input drift and live paper performance against FKS_RETRAIN_*; retrain when crossed.",
            parameters={
                "config": {"deployment": "retrain/forecaster-weekly", "account": account or "default"}
            },
            schedules=(ScheduleSpec(cron="15 * * * *"),),
            tags=("fks", "drift"),
            concurrency=ConcurrencySpec(limit=1, collision_strategy="CANCEL_NEW"),
        ),
        DeploymentSpec(
            flow="execute",
            name="paper",
            entrypoint="flows.deployed:execute",
            description="One cycle of the paper desk after the XNYS close"
            + (
                ""
                if account
                else "; paused until an account is configured (fks deploy --apply --account NAME)"
            ),
            parameters={"config": {"account": account or "default"}},
            schedules=(close_schedule("XNYS", delay_minutes=45),),
            tags=("fks", "paper"),
            concurrency=ConcurrencySpec(limit=1),
            paused=account is None,
        ),
    ]
    return specs


def prefect_yaml(specs: Sequence[DeploymentSpec], pool: str = DEFAULT_POOL) -> dict[str, Any]:
    """The ``prefect.yaml`` document of ``specs`` on work pool ``pool`` (Prefect 3's project file)."""
    return {
        "name": "fks",
        "prefect-version": "3.9.1",
        "build": None,
        "push": None,
        "pull": copy.deepcopy(PULL_STEPS),
        "deployments": [_yaml_deployment(s, pool) for s in specs],
    }


def _yaml_deployment(spec: DeploymentSpec, pool: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "entrypoint": spec.entrypoint,
        "parameters": spec.parameters,
        "tags": list(spec.tags),
        "schedules": [s.model_dump() for s in spec.schedules],
        "paused": spec.paused,
        "work_pool": {"name": pool, "work_queue_name": spec.work_queue, "job_variables": job_variables()},
    }
    if spec.concurrency is not None:
        entry["concurrency_limit"] = spec.concurrency.model_dump()
    return entry


def render_prefect_yaml(specs: Sequence[DeploymentSpec], pool: str = DEFAULT_POOL) -> str:
    """``prefect.yaml``'s text: :data:`PREFECT_YAML_HEADER` then :func:`prefect_yaml` as YAML."""
    body = yaml.safe_dump(prefect_yaml(specs, pool), sort_keys=False, width=110, allow_unicode=True)
    return PREFECT_YAML_HEADER + body
