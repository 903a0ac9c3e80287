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

Nothing here talks to Prefect.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from execution.notify import ICONS, MAX_CONTENT, USERNAME

__all__ = [
    "FAILURE_EVENTS",
    "GATE_DECISIONS",
    "GATE_EVENTS",
    "RUN_FAILURES",
    "RUN_STATE_MESSAGE_CHARS",
    "AutomationSpec",
    "declare_automations",
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


def declare_automations() -> list[AutomationSpec]:
    """The notification automations ``fks deploy --apply`` creates (see the module docstring)."""
    return [
        AutomationSpec(
            name=RUN_FAILURES,
            description="Tell the FKS webhooks (FKS_WEBHOOK_URLS) of a deployed run that failed or crashed.",
            expect=FAILURE_EVENTS,
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.fks"},
            payload=_run_failure_body(),
        ),
        AutomationSpec(
            name=GATE_DECISIONS,
            description="Tell the FKS webhooks (FKS_WEBHOOK_URLS) of a promotion or a refusal by the gate.",
            expect=GATE_EVENTS,
            payload="{{ event.payload.body | tojson }}",
        ),
    ]
