"""``fks deploy``, ``fks worker`` and ``fks status``: the scheduled side of FKS on a Prefect server.

- ``fks deploy`` lists the deployments declared in :mod:`config.deployments` and says whether
  ``prefect.yaml`` is what they generate; ``--write`` rewrites it; ``--apply`` creates (or updates)
  on the Prefect server the work pool (process type) with its work queues (``training`` lets one
  run out at a time), the flows and every deployment: schedules, parameters, tags, concurrency,
  pull step (the project directory), paused or not; and the notifications: one Prefect
  ``Webhook`` block per URL of ``FKS_WEBHOOK_URLS`` and the automations of
  :func:`tasks.automations.declare_automations` calling them (none without URLs).
- ``fks worker`` starts a process worker on the pool (``prefect worker start``) with the
  environment the flow runs need: ``FKS_PROJECT_DIR`` (the checkout the pull step changes to) and
  result persistence in the lake (``PREFECT_LOCAL_STORAGE_PATH``).
- ``fks status`` prints each deployment, its schedule, its next run and its last run's state.

Each needs a Prefect server: the one ``fks server start`` runs (every fks command finds it), or
``PREFECT_API_URL``. Prefect is imported inside the commands only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows._server import server_healthy
from flows.cli._ui import EXIT_BAD_INPUT, err, fail, out, run_guarded, table

if TYPE_CHECKING:
    from pydantic import SecretStr

    from config.deployments import DeploymentSpec
    from config.settings import Settings
    from tasks.automations import AutomationSpec, ZombieSpec

DEFAULT_POOL = "fks"
"""Same as :data:`config.deployments.DEFAULT_POOL` (kept here so ``--help`` imports nothing)."""

PoolOption = Annotated[str, typer.Option("--pool", help="The work pool the deployments run on.")]


def _project_dir() -> Path:
    from config.settings import PROJECT_ROOT

    return PROJECT_ROOT


def _prefect_yaml() -> Path:
    return _project_dir() / "prefect.yaml"


def server_url() -> str:
    """The API URL of the Prefect server the command talks to (the ``fks server`` one, or
    ``PREFECT_API_URL``).

    Raises:
        typer.Exit: (2) no server is known or it does not answer; the message says how to start one.
    """
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        raise fail(
            "no Prefect server to talk to: start one with `fks server start` (every fks command then "
            "uses it), or set PREFECT_API_URL to a running server's API",
            EXIT_BAD_INPUT,
        )
    if not server_healthy(url.rstrip("/")):
        raise fail(
            f"the Prefect server at {url} does not answer: start it with `fks server start` "
            "(or set PREFECT_API_URL to a running server's API)",
            EXIT_BAD_INPUT,
        )
    return url


def declared(account: str | None = None) -> list[DeploymentSpec]:
    """The declared deployments, their ingestion from the asset registry of the settings."""
    from config.assets import load_asset_specs
    from config.deployments import declare_deployments
    from config.settings import get_settings

    return declare_deployments(load_asset_specs(get_settings().assets_file), account=account)


def _schedule_text(spec: DeploymentSpec) -> str:
    return "; ".join(f"{s.cron} ({s.timezone})" for s in spec.schedules) or "-"


# -- apply -------------------------------------------------------------------------------------------


def _parameter_schema(spec: DeploymentSpec) -> dict[str, Any]:
    """The run form of a deployment: its ``config`` parameter's model, from ``config/``."""
    from pydantic import BaseModel

    from config.backfill import BackfillConfig
    from config.flows import IngestConfig, ValidateConfig
    from config.retraining import RetrainCheckConfig, RetrainConfig
    from config.trading import TradeConfig

    models: dict[str, type[BaseModel]] = {
        "ingest": IngestConfig,
        "validate": ValidateConfig,
        "backfill": BackfillConfig,
        "retrain": RetrainConfig,
        "check-retraining": RetrainCheckConfig,
        "execute": TradeConfig,
    }
    model = models.get(spec.flow)
    if model is None:
        return {"type": "object", "properties": {}}
    schema = model.model_json_schema(ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    definitions[model.__name__] = schema
    return {
        "title": "Parameters",
        "type": "object",
        "properties": {"config": {"$ref": f"#/definitions/{model.__name__}", "position": 0}},
        "definitions": definitions,
    }


def apply_deployments(specs: list[DeploymentSpec], pool: str) -> list[dict[str, Any]]:
    """Create or update, on the server of ``PREFECT_API_URL``, the process work pool ``pool`` with
    the work queues of :func:`config.deployments.work_queues`, and each deployment of ``specs``.
    Returns one row per deployment (name, id, paused, schedule)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    from config.deployments import PULL_STEPS, job_variables, work_queues

    rows: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # a worker created it meanwhile
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type="process",
                        description="FKS flow runs as local processes (fks worker).",
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
        for queue in work_queues():
            try:
                found = client.read_work_queue_by_name(queue.name, work_pool_name=pool)
                client.update_work_queue(
                    found.id, concurrency_limit=queue.concurrency_limit, description=queue.description
                )
            except ObjectNotFound:
                client.create_work_queue(
                    name=queue.name,
                    work_pool_name=pool,
                    description=queue.description,
                    concurrency_limit=queue.concurrency_limit,
                )
        for spec in specs:
            flow_id = client.create_flow_from_name(spec.flow)
            concurrency = spec.concurrency
            deployment_id = client.create_deployment(
                flow_id=flow_id,
                name=spec.name,
                description=spec.description,
                entrypoint=spec.entrypoint,
                path=".",
                pull_steps=[dict(step) for step in PULL_STEPS],
                parameters=spec.parameters,
                parameter_openapi_schema=_parameter_schema(spec),
                enforce_parameter_schema=False,
                tags=list(spec.tags),
                work_pool_name=pool,
                work_queue_name=spec.work_queue,
                job_variables=job_variables(),
                schedules=[
                    DeploymentScheduleCreate(
                        schedule=CronSchedule(cron=s.cron, timezone=s.timezone), active=s.active
                    )
                    for s in spec.schedules
                ],
                concurrency_limit=None if concurrency is None else concurrency.limit,
                concurrency_options=None
                if concurrency is None
                else ConcurrencyOptions(
                    collision_strategy=ConcurrencyLimitStrategy(concurrency.collision_strategy)
                ),
                paused=spec.paused,
            )
            rows.append(
                {
                    "deployment": spec.full_name,
                    "id": str(deployment_id),
                    "paused": spec.paused,
                    "schedule": _schedule_text(spec),
                }
            )
    return rows


WEBHOOK_BLOCK = "fks-webhook-{}"
"""The names of the Prefect ``Webhook`` blocks of ``FKS_WEBHOOK_URLS``, numbered from 1 in order."""

WEBHOOK_HEADERS = {"Content-Type": "application/json", "X-FKS-Via": "prefect-automation"}
"""The headers of those blocks' requests: the body is JSON; the second says who sent it."""


def _save_webhook_blocks(urls: list[SecretStr]) -> list[Any]:
    """Save one ``Webhook`` block per URL (:data:`WEBHOOK_BLOCK`, overwritten) and delete the
    numbered blocks beyond them (URLs removed since). Returns the block documents' ids."""
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.types import SecretDict

    ids = [
        Webhook(method="POST", url=url, headers=SecretDict(dict(WEBHOOK_HEADERS))).save(
            WEBHOOK_BLOCK.format(i), overwrite=True
        )
        for i, url in enumerate(urls, start=1)
    ]
    with get_client(sync_client=True) as client:
        for i in range(len(urls) + 1, len(urls) + 100):
            try:
                stale = client.read_block_document_by_name(WEBHOOK_BLOCK.format(i), "webhook")
            except ObjectNotFound:
                break
            client.delete_block_document(stale.id)
    return ids


def _put_automation(client: Any, name: str, core: Any | None) -> str | None:
    """Make the automation called ``name`` on the server ``core`` (None: delete it): updated when
    it exists, never doubled (extra copies are deleted). Returns its id, None when deleted."""
    found = client.read_automations_by_name(name)
    if core is None:
        for automation in found:
            client.delete_automation(automation.id)
        return None
    if not found:
        return str(client.create_automation(core))
    client.update_automation(found[0].id, core)
    for extra in found[1:]:
        client.delete_automation(extra.id)
    return str(found[0].id)


def apply_notifications(automations: list[AutomationSpec], urls: list[SecretStr]) -> list[dict[str, Any]]:
    """Create or update, on the server of ``PREFECT_API_URL``, a ``Webhook`` block per URL and each
    automation of ``automations`` calling every block (a reactive trigger on its events); without
    URLs the automations are deleted (nothing to call). Idempotent: an automation of the same name
    is updated, never doubled. Returns one row per automation (name, id, webhooks)."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    blocks = _save_webhook_blocks(urls)
    rows: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        for spec in automations:
            core = AutomationCore(
                name=spec.name,
                description=spec.description,
                enabled=True,
                trigger=EventTrigger(
                    expect=set(spec.expect),
                    match_related=dict(spec.match_related),
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                ),
                actions=[CallWebhook(block_document_id=block, payload=spec.payload) for block in blocks],
            )
            automation_id = _put_automation(client, spec.name, core if blocks else None)
            if automation_id is not None:
                rows.append({"automation": spec.name, "id": automation_id, "webhooks": len(blocks)})
    return rows


def apply_zombie_automation(spec: ZombieSpec | None) -> str | None:
    """Create or update the zombie-run automation of ``spec`` on the server of ``PREFECT_API_URL``
    (a proactive trigger per flow run: after its heartbeat, none of the expected events within the
    window -> ``Crashed``); None deletes it (no heartbeats to watch). Returns its id or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    core = None
    if spec is not None:
        core = AutomationCore(
            name=spec.name,
            description=spec.description,
            enabled=True,
            trigger=EventTrigger(
                after={spec.after},
                expect=set(spec.expect),
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=dict(spec.match_related),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=spec.within_s),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=spec.message)],
        )
    from tasks.automations import ZOMBIE_RUNS

    with get_client(sync_client=True) as client:
        return _put_automation(client, spec.name if spec is not None else ZOMBIE_RUNS, core)


def deploy_command(
    pool: PoolOption = DEFAULT_POOL,
    apply: Annotated[
        bool, typer.Option("--apply", help="Create or update the pool and the deployments on the server.")
    ] = False,
    write: Annotated[
        bool,
        typer.Option("--write", help="Rewrite prefect.yaml from the declarations (config/deployments.py)."),
    ] = False,
    account: Annotated[
        str | None,
        typer.Option(help="The paper account of execute/paper; without one that deployment stays paused."),
    ] = None,
) -> None:
    """The deployments (config/deployments.py): list them, write prefect.yaml, apply them to the server."""
    from config.deployments import render_prefect_yaml
    from config.settings import get_settings
    from flows._flowruns import configured_heartbeat_s
    from tasks.automations import declare_automations, declare_zombie_automation

    def run() -> None:
        specs = declared(account)
        text = render_prefect_yaml(declared(None))  # for the default pool: `prefect deploy --pool` overrides
        path = _prefect_yaml()
        if write:
            path.write_text(text, encoding="utf-8")
            out.print(f"wrote {path}")
        if apply:
            url = server_url()
            # checked before anything is applied (a window shorter than a heartbeat: exit 2)
            zombie = declare_zombie_automation(configured_heartbeat_s(), get_settings().zombie_after_s)
            with err.status(f"deploying to {url}"):
                rows = apply_deployments(specs, pool)
                notifying = apply_notifications(declare_automations(), get_settings().webhook_urls)
                apply_zombie_automation(zombie)
            out.print(
                table(
                    f"{len(rows)} deployment(s) on work pool {pool!r} at {url}",
                    ["deployment", "schedule", "paused"],
                    [[r["deployment"], r["schedule"], "paused" if r["paused"] else "-"] for r in rows],
                    set(),
                )
            )
            names = ", ".join(r["automation"] for r in notifying)
            out.print(
                f"{len(notifying)} notification automation(s) ({names})"
                if notifying
                else "No notification automation: FKS_WEBHOOK_URLS is empty.",
                highlight=False,
            )
            out.print(
                f"Zombie runs: a deployed run silent for {zombie.within_s} s is marked Crashed."
                if zombie
                else "No zombie-run automation: PREFECT_FLOWS_HEARTBEAT_FREQUENCY sends no heartbeats.",
                highlight=False,
            )
            out.print(
                f"Start a worker with `fks worker --pool {pool}`; see the runs with `fks status`.",
                highlight=False,
            )
            return
        out.print(
            table(
                f"{len(specs)} deployment(s) declared (config/deployments.py), work pool {pool!r}",
                ["deployment", "schedule", "queue", "concurrency", "paused"],
                [
                    [
                        s.full_name,
                        _schedule_text(s),
                        s.work_queue,
                        "-"
                        if s.concurrency is None
                        else f"{s.concurrency.limit} ({s.concurrency.collision_strategy})",
                        "paused" if s.paused else "-",
                    ]
                    for s in specs
                ],
                set(),
            )
        )
        current = path.exists() and path.read_text(encoding="utf-8") == text
        if not current and not write:
            err.print(f"{path} differs from the declarations: rewrite it with `fks deploy --write`.")
        out.print("Create them on the Prefect server with `fks deploy --apply` (after `fks server start`).")

    run_guarded(run, (ValueError, EXIT_BAD_INPUT))


# -- worker -------------------------------------------------------------------------------------------


def worker_environment(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """The environment of a worker (and so of its flow runs): ``base`` plus ``FKS_PROJECT_DIR``
    (the checkout, unless set), result persistence, and for a ``file://`` lake Prefect's local
    result storage in ``<lake>/_prefect/results`` (relative lakes resolve in the project directory,
    where the flow runs work)."""
    from config.deployments import PROJECT_DIR_ENV, RESULTS_ENV

    env = dict(base)
    project = Path(env.get(PROJECT_DIR_ENV) or _project_dir())
    env[PROJECT_DIR_ENV] = str(project)
    env.update(RESULTS_ENV)
    if settings.lake_uri.startswith("file://") and "PREFECT_LOCAL_STORAGE_PATH" not in base:
        lake = Path(settings.lake_uri.removeprefix("file://"))
        env["PREFECT_LOCAL_STORAGE_PATH"] = str(
            (lake if lake.is_absolute() else project / lake) / "_prefect" / "results"
        )
    paths = [str(project), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def worker_command(
    pool: PoolOption = DEFAULT_POOL,
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once (default: no limit).")] = None,
    name: Annotated[str | None, typer.Option(help="The worker's name (default: Prefect's).")] = None,
) -> None:
    """Start a process worker on the pool: it runs the deployments' flow runs (Ctrl-C stops it)."""
    from config.settings import get_settings

    def run() -> None:
        url = server_url()
        settings = get_settings()
        env = worker_environment(settings, dict(os.environ))
        if not settings.lake_uri.startswith("file://") and "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK" not in env:
            err.print(
                "note: results are kept in Prefect's local storage: the lake is not a local folder; set "
                "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK to a storage block of that bucket "
                "(docs/deployments.md)"
            )
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
        if limit is not None:
            command += ["--limit", str(limit)]
        if name:
            command += ["--name", name]
        err.print(f"worker on pool {pool!r} of {url}; flow runs work in {env['FKS_PROJECT_DIR']}")
        sys.stderr.flush()
        sys.stdout.flush()
        os.chdir(env["FKS_PROJECT_DIR"])
        os.execve(sys.executable, command, env)

    run_guarded(run, (ValueError, EXIT_BAD_INPUT))


# -- status -------------------------------------------------------------------------------------------


def _next_from_schedule(cron: str, timezone: str) -> datetime | None:
    from prefect.server.schemas.schedules import CronSchedule

    dates = asyncio.run(CronSchedule(cron=cron, timezone=timezone).get_dates(n=1))
    return dates[0].astimezone(UTC) if dates else None


def deployment_status() -> list[dict[str, Any]]:
    """Each FKS deployment (tag ``fks``) on the server: name, paused, schedules, the next run (the
    earliest scheduled flow run, else the schedule's next date), and the last run with its state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.client.schemas.sorting import FlowRunSort

    rows = []
    flows: dict[Any, str] = {}
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["fks"]))
        )
        for d in deployments:
            if d.flow_id not in flows:
                flows[d.flow_id] = client.read_flow(d.flow_id).name
            mine = FlowRunFilterDeploymentId(any_=[d.id])
            upcoming = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=mine,
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            last = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=mine,
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED, StateType.PENDING])
                    ),
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            schedules = [s.schedule for s in d.schedules if s.active]
            next_run: datetime | None = None
            next_source = ""
            if upcoming and upcoming[0].expected_start_time is not None:
                next_run, next_source = upcoming[0].expected_start_time, "scheduled run"
            elif schedules and not d.paused:
                crons = [s for s in schedules if isinstance(s, CronSchedule)]
                dates = [_next_from_schedule(s.cron, s.timezone or "UTC") for s in crons]
                found = [x for x in dates if x is not None]
                if found:
                    next_run, next_source = min(found), "schedule"
            run = last[0] if last else None
            rows.append(
                {
                    "deployment": f"{flows[d.flow_id]}/{d.name}",
                    "paused": bool(d.paused),
                    "schedule": "; ".join(
                        f"{getattr(s, 'cron', s)} ({getattr(s, 'timezone', None) or 'UTC'})"
                        for s in schedules
                    )
                    or "-",
                    "next_run": None if next_run is None else next_run.astimezone(UTC).isoformat(),
                    "next_from": next_source,
                    "last_run": None if run is None else run.name,
                    "last_state": None if run is None or run.state is None else run.state.name,
                    "last_start": None
                    if run is None or run.start_time is None
                    else run.start_time.astimezone(UTC).isoformat(),
                }
            )
    rows.sort(key=lambda r: str(r["deployment"]))
    return rows


def _short(iso: str | None) -> str:
    return "-" if not iso else iso[:16].replace("T", " ")


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """The deployments on the Prefect server: schedule, next run, last run and its state."""

    def run() -> None:
        url = server_url()
        rows = deployment_status()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            out.print(f"No FKS deployment on {url}: create them with `fks deploy --apply`.")
            return
        out.print(
            table(
                f"Deployments on {url} (times UTC)",
                ["deployment", "schedule", "next run", "last run", "state", "started"],
                [
                    [
                        r["deployment"],
                        r["schedule"],
                        "paused" if r["paused"] else _short(r["next_run"]),
                        r["last_run"] or "-",
                        r["last_state"] or "-",
                        _short(r["last_start"]),
                    ]
                    for r in rows
                ],
                set(),
            )
        )

    run_guarded(run)
