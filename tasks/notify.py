"""Webhook notifications of the scheduled runs, through :class:`execution.notify.Notifier`
(``FKS_WEBHOOK_URLS``; Slack- and Discord-compatible bodies): a failed or crashed flow run (the
flows' state hooks), and the promotion gate's decision (a task).

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

__all__ = ["notify_gate", "notify_run_state", "notify_text"]

log = logging.getLogger(__name__)

_MESSAGE_CHARS = 500


def notify_run_state(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow's ``on_failure`` / ``on_crashed`` hook: post an ``error`` event naming the flow, the
    run, its state and message, its deployment's tags and its parameters' names. Never raises."""
    try:
        settings = get_settings()
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


@task(name="notify-gate", cache_policy=NONE)
def notify_gate(summary: PromotionSummary, settings: Settings) -> int:
    """Post the gate's decision: ``info`` when the challenger was promoted, ``refusal`` when it was
    not. Returns how many webhooks took it."""
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
    with Notifier.from_settings(settings) as notifier:
        return notifier.send(Event(kind, "", title, fields))


@task(name="notify", cache_policy=NONE)
def notify_text(kind: str, title: str, fields: dict[str, Any], settings: Settings) -> int:
    """Post one event (:class:`execution.notify.Event`); returns how many webhooks took it."""
    with Notifier.from_settings(settings) as notifier:
        return notifier.send(Event(kind, "", title, fields))
