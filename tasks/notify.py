"""Webhook notifications of the scheduled runs (``FKS_WEBHOOK_URLS``; Slack- and
Discord-compatible bodies, :class:`execution.notify.Notifier`'s): a failed or crashed flow run and
the promotion gate's decision.

Where ``fks deploy --apply`` created the Prefect automations
(:func:`tasks.automations.declare_automations`), the Prefect server posts them through its webhook
blocks, and the direct path here stays silent: the deployed flows' state hooks
(:func:`notify_run_state`) post only when the server has no enabled ``fks: flow run failed or
crashed`` automation, and :func:`notify_gate` always emits the decision as a Prefect event
(``tasks.events``) but posts it itself only when there is no ``fks: promotion gate decision``
automation (e.g. ``fks train``/``fks promote`` on Prefect's temporary server, or deployments made
with ``prefect deploy``).

Delivery never raises: a webhook that fails is logged by the notifier, and the run's own state is
what it was.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from config.settings import Settings, get_settings
from execution.notify import Event, Notifier
from models.promotion import PromotionSummary
from tasks.automations import GATE_DECISIONS, RUN_FAILURES, RUN_STATE_MESSAGE_CHARS
from tasks.events import automation_applied, emit_gate_decision

__all__ = ["gate_event", "notify_gate", "notify_run_state", "notify_text"]

log = logging.getLogger(__name__)

_MESSAGE_CHARS = RUN_STATE_MESSAGE_CHARS


def notify_run_state(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow's ``on_failure`` / ``on_crashed`` hook: post an ``error`` event naming the flow, the
    run, its state and message and its deployment's tags; silent when the server's automation
    posts it (see the module docstring). Never raises."""
    try:
        settings = get_settings()
        if not settings.webhook_urls or automation_applied(RUN_FAILURES):
            return
        tags = [t for t in getattr(flow_run, "tags", []) or [] if t != "fks"]
        fields: dict[str, Any] = {
            "flow": getattr(flow, "name", "?"),
            "run": getattr(flow_run, "name", "?"),
            "state": getattr(state, "name", "?"),
            "flow_run_id": str(getattr(flow_run, "id", "")),
        }
        if tags:
            fields["tags"] = ", ".join(tags)
        message = str(getattr(state, "message", "") or "").strip()
        if message:
            fields["message"] = message[:_MESSAGE_CHARS]
        title = f"{fields['flow']} run {fields['run']} {str(fields['state']).lower()}"
        with Notifier.from_settings(settings) as notifier:
            notifier.send(Event("error", "", title, fields))
    except Exception:  # a hook must not turn a failure into another one
        log.warning("could not notify the %s state of a flow run", getattr(state, "name", "?"), exc_info=True)


def gate_event(summary: PromotionSummary) -> Event:
    """The gate's decision as a webhook message: ``info`` when the challenger was promoted,
    ``refusal`` when it was not, with the metric, the champion's and the baseline's values and the
    reasons."""
    kind = "info" if summary.promoted else "refusal"
    verdict = "promoted to champion" if summary.promoted else "refused by the promotion gate"
    fields: dict[str, Any] = {
        "outcome": summary.outcome,
        summary.primary_metric: summary.challenger_value,
        "champion": summary.champion_value,
        summary.baseline_name or "baseline": summary.baseline_value,
    }
    if summary.reasons:
        fields["why"] = "; ".join(summary.reasons)[:_MESSAGE_CHARS]
    title = f"{summary.model} v{summary.challenger_version} {verdict}"
    return Event(kind, "", title, fields)


@task(name="notify-gate", cache_policy=NONE)
def notify_gate(summary: PromotionSummary, settings: Settings) -> int:
    """Emit the gate's decision as a Prefect event (:func:`tasks.events.emit_gate_decision`) and,
    unless the server's automation posts it, post it to the webhooks. Returns how many webhooks
    this process posted it to (0 when the automation does)."""
    event = gate_event(summary)
    emit_gate_decision(
        event, model=summary.model, version=str(summary.challenger_version), promoted=summary.promoted
    )
    if not settings.webhook_urls or automation_applied(GATE_DECISIONS):
        return 0
    with Notifier.from_settings(settings) as notifier:
        return notifier.send(event)


@task(name="notify", cache_policy=NONE)
def notify_text(kind: str, title: str, fields: dict[str, Any], settings: Settings) -> int:
    """Post one event (:class:`execution.notify.Event`); returns how many webhooks took it."""
    with Notifier.from_settings(settings) as notifier:
        return notifier.send(Event(kind, "", title, fields))
