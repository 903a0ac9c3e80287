"""What the scheduled runs tell the webhooks, against a real receiver on loopback: a failed or
crashed flow run (the deployed flows' state hook) and the promotion gate's decision."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Crashed, Failed
from pydantic import SecretStr

from config.settings import Settings
from flows.deployed import validate
from models.promotion import PromotionSummary
from tasks.notify import notify_gate, notify_run_state
from tests.integration.test_webhooks import Receiver

TOKEN = "T0KEN-gate-5ecret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with contextlib.closing(Receiver()) as running:
        yield running


@pytest.fixture
def hooked(settings: Settings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose webhook is the receiver; the environment says the same (hooks read it)."""
    url = f"{receiver.url}/services/T0/B0/{TOKEN}"
    monkeypatch.setenv("FKS_WEBHOOK_URLS", url)
    return settings.model_copy(update={"webhook_urls": [SecretStr(url)]})


def _summary(promoted: bool) -> PromotionSummary:
    return PromotionSummary(
        model="fks-forecaster",
        outcome="promoted" if promoted else "refused",
        promoted=promoted,
        forced=False,
        challenger_version="4",
        champion_version="3",
        primary_metric="sharpe",
        challenger_value=1.25,
        champion_value=0.8 if promoted else 1.4,
        baseline_name="buy and hold",
        baseline_value=0.5,
        window="2017-01-03 .. 2018-03-27",
        reasons=[] if promoted else ["sharpe 1.25 does not beat the champion's 1.4 by 5%"],
        promotion_id=7,
    )


def test_the_gate_decision_reaches_the_webhook(hooked: Settings, receiver: Receiver) -> None:
    assert notify_gate.fn(_summary(True), hooked) == 1
    assert notify_gate.fn(_summary(False), hooked) == 1
    promoted, refused = (r.json() for r in receiver.received)
    assert promoted["fks"]["kind"] == "info"
    assert promoted["fks"]["title"] == "fks-forecaster v4 promoted to champion"
    assert promoted["fks"]["fields"] == {
        "outcome": "promoted",
        "sharpe": 1.25,
        "champion": 0.8,
        "buy and hold": 0.5,
    }
    assert refused["fks"]["kind"] == "refusal" and "refused by the promotion gate" in refused["text"]
    assert refused["fks"]["fields"]["why"] == "sharpe 1.25 does not beat the champion's 1.4 by 5%"
    assert refused["content"] == refused["text"] and refused["username"] == "fks"


@pytest.mark.parametrize(
    "state", [Failed(message="InputError: no stored bars for NOPE"), Crashed(message="SIGKILL")]
)
def test_a_failed_or_crashed_run_reaches_the_webhook(
    hooked: Settings, receiver: Receiver, state: object
) -> None:
    run = FlowRun(id=uuid.uuid4(), name="brave-otter", flow_id=uuid.uuid4(), tags=["fks", "validate"])
    assert notify_run_state in validate.on_failure_hooks and notify_run_state in validate.on_crashed_hooks
    notify_run_state(validate, run, state)
    (body,) = (r.json() for r in receiver.received)
    fields = body["fks"]["fields"]
    assert body["fks"]["kind"] == "error"
    assert fields["flow"] == "validate" and fields["run"] == "brave-otter" and fields["tags"] == "validate"
    assert fields["state"] == state.name and fields["message"] == state.message  # type: ignore[attr-defined]
    assert body["text"].startswith(f"❗ ERROR validate run brave-otter {state.name.lower()}")  # type: ignore[attr-defined]


def test_a_webhook_that_fails_does_not_fail_the_hook(hooked: Settings, receiver: Receiver) -> None:
    from tests.integration.test_webhooks import Answer

    receiver.queue(f"/services/T0/B0/{TOKEN}", Answer(404, {"message": "Unknown Webhook"}))
    run = FlowRun(id=uuid.uuid4(), name="calm-owl", flow_id=uuid.uuid4())
    notify_run_state(validate, run, Failed(message="boom"))  # logged, never raised
    assert len(receiver.received) == 1
