"""The notification automations of FKS on a Prefect server, declared as data: ``fks deploy
--apply`` (``flows/cli/deploy.py``) saves one Prefect ``Webhook`` block per URL of
``FKS_WEBHOOK_URLS`` and creates each automation of :func:`declare_automations` with one
``CallWebhook`` action per block. Each posts the body :class:`execution.notify.Notifier` posts
(Slack- and Discord-compatible):

- :data:`RUN_FAILURES`: a flow run of an FKS deployment (tag ``fks``) entered ``Failed`` or
  ``Crashed`` (:data:`FAILURE_EVENTS`, the server's own events); the body is a template of
  Prefect's Jinja environment, rendered by the server.
- :data:`GATE_DECISIONS`: the promotion gate's decisions (:data:`GATE_EVENTS`, emitted by
  :func:`tasks.events.emit_gate_decision` with the body in their payload).

- :data:`ZOMBIE_RUNS` (:func:`declare_zombie_automation`): a running flow run of an FKS deployment
  that stopped sending heartbeats (its worker or machine died: nothing else would end it) is
  marked ``Crashed`` by the server; that ``Crashed`` then reaches the webhooks through
  :data:`RUN_FAILURES`. It needs no webhook.

Nothing here talks to Prefect.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from config.flows import InputError
from execution.notify import ICONS, MAX_CONTENT, USERNAME

__all__ = [
    "FAILURE_EVENTS",
    "GATE_DECISIONS",
    "GATE_EVENTS",
    "RUN_FAILURES",
    "RUN_STATE_MESSAGE_CHARS",
    "ZOMBIE_EXPECT",
    "ZOMBIE_RUNS",
    "AutomationSpec",
    "ZombieSpec",
    "declare_automations",
    "declare_zombie_automation",
]

FAILURE_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed")
"""The Prefect server's events of a flow run entering ``Failed`` or ``Crashed``."""

GATE_EVENTS = ("fks.model.promoted", "fks.model.refused")
"""The events of the promotion gate's decisions (``tasks.events.emit_gate_decision``); each carries
the webhook body under ``payload.body``."""

RUN_FAILURES = "fks: flow run failed or crashed"
"""The name of the automation that tells the webhooks of a failed or crashed deployed run."""

GATE_DECISIONS = "fks: promotion gate decision"
"""The name of the automation that tells the webhooks of a promotion or a refusal."""

ZOMBIE_RUNS = "fks: flow run stopped sending heartbeats"
"""The name of the automation that marks a silent deployed run ``Crashed``."""

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
"""The event a flow run started by a worker sends every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` s."""

ZOMBIE_EXPECT = (
    HEARTBEAT_EVENT,
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)
"""What a live flow run sends within the window after a heartbeat: another, or its final state."""

MISSED_HEARTBEATS = 3
"""Heartbeats missed in a row before a run counts as dead, unless ``FKS_ZOMBIE_AFTER_S`` says."""

RUN_STATE_MESSAGE_CHARS = 500
"""The most characters of a run's state message in its notification."""


class AutomationSpec(BaseModel):
    """A Prefect automation that posts ``payload`` (a template of Prefect's Jinja environment,
    rendered with the triggering ``event``, its ``flow_run``, ``flow``, ...) to every FKS webhook
    block when an event of ``expect`` happens to a resource related to ``match_related``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    expect: tuple[str, ...]
    match_related: dict[str, str] = Field(default_factory=dict)
    payload: str


class ZombieSpec(BaseModel):
    """A proactive Prefect automation: after a flow run's heartbeat, when none of ``expect`` comes
    for that run within ``within_s`` seconds, set the run ``Crashed`` with ``message``. Only runs
    related to ``match_related`` (the tag of FKS's deployments) are watched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    within_s: int
    message: str
    expect: tuple[str, ...] = ZOMBIE_EXPECT
    after: str = HEARTBEAT_EVENT
    match_related: dict[str, str] = Field(default_factory=dict)


def _run_failure_body() -> str:
    """The webhook body of a failed or crashed run, in Prefect's template language: the fields,
    the line and the JSON of :meth:`execution.notify.Event.payload` for an ``error`` event with the
    flow, the run, its state, its id, its tags but ``fks`` and its state message (as
    ``tasks.notify.notify_run_state`` posts)."""
    return (
        "{%- set state = event.resource['prefect.state-name'] -%}"
        "{%- set message = (event.resource['prefect.state-message'] or '').split() | join(' ') -%}"
        "{%- set tags = flow_run.tags | reject('equalto', 'fks') | join(', ') -%}"
        "{%- set pairs = [('flow', flow.name), ('run', flow_run.name), ('state', state),"
        " ('flow_run_id', flow_run.id | string)]"
        " + ([('tags', tags)] if tags else [])"
        f" + ([('message', message[:{RUN_STATE_MESSAGE_CHARS}])] if message else []) -%}}"
        "{%- set title = flow.name ~ ' run ' ~ flow_run.name ~ ' ' ~ (state | lower) -%}"
        "{%- set details -%}{%- for key, value in pairs -%}"
        "{{ key }}: `{{ value | replace('`', \"'\") }}`{{ ', ' if not loop.last }}"
        "{%- endfor -%}{%- endset -%}"
        "{%- set ts = event.occurred.strftime('%Y-%m-%d %H:%M:%S') -%}"
        f"{{%- set line = ('{ICONS['error']} ERROR ' ~ title ~ ' | ' ~ details ~ ' | ' ~ ts ~ ' UTC')"
        f"[:{MAX_CONTENT}] -%}}"
        "{{ {'text': line, 'content': line, "
        f"'username': '{USERNAME}', "
        "'allowed_mentions': {'parse': []}, "
        "'fks': {'kind': 'error', 'account': '', 'title': title, 'fields': dict(pairs), "
        "'ts': event.occurred.isoformat()}} | tojson }}"
    )


_FKS_TAG = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.fks"}


def declare_zombie_automation(heartbeat_s: int | None, after_s: int | None = None) -> ZombieSpec | None:
    """The zombie-run automation for runs sending a heartbeat every ``heartbeat_s`` seconds (the
    workers' ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``; None: they send none, so nothing can be
    watched and None is returned). A run is dead after ``after_s`` seconds without one
    (``FKS_ZOMBIE_AFTER_S``), by default :data:`MISSED_HEARTBEATS` heartbeats.

    Raises:
        InputError: ``after_s`` not longer than ``heartbeat_s`` (live runs would be crashed).
    """
    if heartbeat_s is None:
        return None
    within = after_s if after_s is not None else MISSED_HEARTBEATS * heartbeat_s
    if within <= heartbeat_s:
        raise InputError(
            f"FKS_ZOMBIE_AFTER_S={within} is not longer than the heartbeat interval ({heartbeat_s} s, "
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY): every running deployed run would be marked Crashed "
            f"between two heartbeats; set it above {heartbeat_s} or leave it empty "
            f"({MISSED_HEARTBEATS * heartbeat_s} s)"
        )
    return ZombieSpec(
        name=ZOMBIE_RUNS,
        description=f"Mark Crashed a deployed FKS run silent for {within} s (its worker or machine died).",
        within_s=within,
        message=f"no heartbeat for {within} s: its worker or machine stopped (marked by {ZOMBIE_RUNS!r})",
        match_related=dict(_FKS_TAG),
    )


def declare_automations() -> list[AutomationSpec]:
    """The notification automations ``fks deploy --apply`` creates (see the module docstring)."""
    return [
        AutomationSpec(
            name=RUN_FAILURES,
            description="Tell the FKS webhooks (FKS_WEBHOOK_URLS) of a deployed run that failed or crashed.",
            expect=FAILURE_EVENTS,
            match_related=dict(_FKS_TAG),
            payload=_run_failure_body(),
        ),
        AutomationSpec(
            name=GATE_DECISIONS,
            description="Tell the FKS webhooks (FKS_WEBHOOK_URLS) of a promotion or a refusal by the gate.",
            expect=GATE_EVENTS,
            payload="{{ event.payload.body | tojson }}",
        ),
    ]
