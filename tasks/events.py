"""Prefect events of FKS and the automations that turn them (and Prefect's own flow-run events)
into webhook messages.

- :func:`emit_gate_decision`: the promotion gate's decision as a Prefect event
  (``fks.model.promoted`` / ``fks.model.refused``, :data:`tasks.automations.GATE_EVENTS`) whose
  payload carries the webhook body of :class:`execution.notify.Notifier` under ``body``: the
  automation ``fks: promotion gate decision`` posts that body to the webhook blocks.
- :func:`automation_applied`: whether the Prefect server has an enabled automation of that name,
  so that the direct path (the notifier, from the flow's process) stays silent where an automation
  posts the same message (no double notification).

Emitting never raises: an event that cannot be sent is logged, the run goes on.
"""

from __future__ import annotations

import logging
from typing import Any

from execution.notify import Event
from tasks.automations import GATE_EVENTS

__all__ = ["automation_applied", "emit_gate_decision"]

log = logging.getLogger(__name__)


def emit_gate_decision(event: Event, *, model: str, version: str, promoted: bool) -> bool:
    """Emit the gate's decision on ``model`` version ``version`` (the webhook message ``event``) as
    a Prefect event of the model (resource ``fks.model.<model>``). Returns whether it was sent
    (False without a Prefect API to send to)."""
    from prefect.events import emit_event

    promoted_event, refused_event = GATE_EVENTS
    try:
        sent = emit_event(
            event=promoted_event if promoted else refused_event,
            resource={
                "prefect.resource.id": f"fks.model.{model}",
                "prefect.resource.name": model,
                "fks.model.version": version,
            },
            payload={"body": event.payload()},
        )
    except Exception:  # a notification must not fail the retraining it reports
        log.warning("could not emit the gate's decision on %s v%s", model, version, exc_info=True)
        return False
    return sent is not None


def automation_applied(name: str) -> bool:
    """True when the Prefect server of ``PREFECT_API_URL`` has an enabled automation called
    ``name``. False without ``PREFECT_API_URL`` (Prefect's temporary server has none) or when the
    server cannot be asked (then the direct path notifies)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return False
    try:
        with get_client(sync_client=True) as client:
            found: list[Any] = client.read_automations_by_name(name)
    except Exception:
        log.warning("could not read the automations of the Prefect server", exc_info=True)
        return False
    return any(a.enabled for a in found)
