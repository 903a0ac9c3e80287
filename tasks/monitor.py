"""Prefect tasks of the retraining check: decide (:func:`execution.monitor.check_retraining`), and
start the retraining deployment when a threshold is crossed."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from config.retraining import RetrainCheckConfig
from config.settings import Settings
from execution.monitor import RetrainDecision, check_retraining
from tasks.store import store_for

__all__ = ["decide_retraining", "start_retraining"]


@task(name="decide-retraining", task_run_name="decide-retraining-{config.model}", cache_policy=NONE)
def decide_retraining(config: RetrainCheckConfig, settings: Settings) -> RetrainDecision:
    """Input drift of ``config.model`` and live performance of ``config.account`` against the
    settings' ``retrain_*`` thresholds."""
    return check_retraining(settings, store_for(settings), config.model, account=config.account)


@task(
    name="start-retraining",
    task_run_name="start-{deployment}",
    cache_policy=NONE,
    retries=2,
    retry_delay_seconds=[5, 30],
)
def start_retraining(deployment: str) -> str:
    """Create a run of ``deployment`` (``flow/name``) now, tagged ``trigger:retrain-check``; returns
    its flow run id. It does not wait: the training work queue runs one training at a time.

    Raises:
        prefect.exceptions.ObjectNotFound: no such deployment (run ``fks deploy --apply``).
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = run_deployment(
        deployment,
        timeout=0,
        as_subflow=False,
        tags=["trigger:retrain-check"],
        idempotency_key=None,
    )
    if not isinstance(run, FlowRun):  # only a caller inside an event loop gets a coroutine
        raise TypeError("start_retraining runs in a synchronous task")
    return str(run.id)
