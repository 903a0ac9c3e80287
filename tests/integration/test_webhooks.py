"""Webhook notifications against a real HTTP receiver on loopback (``http.server`` in a thread):
the exact JSON body of each kind, one retry on 429/5xx honouring Retry-After, failures counted and
logged with the URL redacted to ``scheme://host/…``, never raised."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import Settings
from execution.notify import KINDS, Event, Notifier
from tests.serving_support import free_port

TOKEN = "T0KEN-B1234-SeCrEt9876"
"""The secret part of every webhook URL here: it must never reach a log."""


@dataclass
class Answer:
    """What the receiver answers: status, JSON body, headers, delay (seconds)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback HTTP server recording every request; answers are queued per path (``queue``),
    else ``default`` (200, Slack's ``ok``)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.queued: dict[str, deque[Answer]] = {}
        self.default = Answer(200, "ok")
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.received.append(
                        Received(self.command, self.path, dict(self.headers.items()), body)
                    )
                    queue = receiver.queued.get(self.path)
                    answer = queue.popleft() if queue else receiver.default
                if answer.delay:
                    time.sleep(answer.delay)
                data = (
                    answer.body.encode() if isinstance(answer.body, str) else json.dumps(answer.body).encode()
                )
                self.send_response(answer.status)
                kind = "text/plain" if isinstance(answer.body, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            do_POST = _handle  # noqa: N815 (http.server's names)
            do_GET = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def queue(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self.queued.setdefault(path, deque()).extend(answers)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def reset(self) -> Receiver:
        with self._lock:
            self.received.clear()
            self.queued.clear()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Receiver:
    return shared_receiver.reset()


@pytest.fixture
def sleeps() -> list[float]:
    return []


SLACK = f"/services/T000/B000/{TOKEN}"
DISCORD = f"/api/webhooks/123456/{TOKEN}"
WHEN = datetime(2026, 1, 2, 15, 30, 5, tzinfo=UTC)

DETAILS = "Bought 10 SPX | qty: `10`, price: `4712.25`, order: `o-17` | 2026-01-02 15:30:05 UTC"
EXPECTED_LINES = {
    "fill": f"✅ FILL [paper] {DETAILS}",
    "refusal": f"⛔ REFUSAL [paper] {DETAILS}",
    "halt": f"🛑 HALT [paper] {DETAILS}",
    "error": f"❗ ERROR [paper] {DETAILS}",
    "info": f"ℹ️ INFO [paper] {DETAILS}",
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_posts_one_body_slack_and_discord_both_accept(receiver: Receiver, kind: str) -> None:
    urls = [SecretStr(receiver.url + SLACK), SecretStr(receiver.url + DISCORD)]
    event = Event(kind, "paper", "Bought 10 SPX", {"qty": 10, "price": 4712.25, "order": "o-17"}, ts=WHEN)
    with Notifier(urls, timeout=2.0) as notifier:
        assert notifier.send(event) == 2
        assert (notifier.delivered, notifier.failed) == (2, 0)
    line = EXPECTED_LINES[kind]
    expected = {
        "text": line,
        "content": line,
        "username": "fks",
        "allowed_mentions": {"parse": []},
        "fks": {
            "kind": kind,
            "account": "paper",
            "title": "Bought 10 SPX",
            "fields": {"qty": 10, "price": 4712.25, "order": "o-17"},
            "ts": "2026-01-02T15:30:05+00:00",
        },
    }
    for path in (SLACK, DISCORD):
        [got] = receiver.at(path)
        assert got.method == "POST" and got.headers["Content-Type"] == "application/json"
        assert got.json() == expected


def test_long_events_fit_discords_2000_characters(receiver: Receiver) -> None:
    event = Event("error", "paper", "Broker said no", {"reason": "x" * 5000}, ts=WHEN)
    with Notifier([SecretStr(receiver.url + DISCORD)], timeout=2.0) as notifier:
        assert notifier.send(event) == 1
    body = receiver.at(DISCORD)[0].json()
    assert len(body["content"]) == 2000 and body["content"].endswith("…") and body["text"] == body["content"]
    assert body["fks"]["fields"]["reason"] == "x" * 5000  # the structured copy is whole


def test_failures_are_counted_and_logged_redacted_never_raised(
    receiver: Receiver, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}"
    gone = f"/gone/{TOKEN}"
    receiver.queue(gone, Answer(404, "no_service"))
    receiver.queue(SLACK, Answer(500, "boom"), Answer(500, "boom"))
    urls = [SecretStr(receiver.url + SLACK), SecretStr(dead), SecretStr(receiver.url + gone),
            SecretStr(receiver.url + DISCORD)]  # fmt: skip
    notifier = Notifier(urls, timeout=2.0, sleep=sleeps.append)
    delivered = notifier.send(Event("halt", "paper", "Daily loss limit", {"loss": -0.031}, ts=WHEN))
    assert delivered == 1  # only DISCORD took it
    assert (notifier.delivered, notifier.failed) == (1, 3)
    assert len(receiver.at(SLACK)) == 2  # a 500 is retried once
    assert len(receiver.at(gone)) == 1  # a 404 is not
    assert sleeps == [1.0]  # no Retry-After: 1 s, capped at 2 s
    text = caplog.text
    assert TOKEN not in text and "/hooks/" not in text and "/services/" not in text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    port = receiver.url.rsplit(":", 1)[1]
    assert f"webhook http://127.0.0.1:{port}/… answered 500; retrying once" in text
    assert f"webhook http://127.0.0.1:{port}/… answered 500; not delivered" in text
    assert f"webhook http://127.0.0.1:{port}/… answered 404; not delivered" in text
    assert "ConnectError" in text
    assert TOKEN not in repr(notifier) and notifier.targets[0] == f"http://127.0.0.1:{port}/…"
    notifier.close()


def test_a_429_is_retried_once_after_retry_after_capped(receiver: Receiver, sleeps: list[float]) -> None:
    receiver.queue(SLACK, Answer(429, {"message": "rate limited"}, {"Retry-After": "30"}))
    receiver.queue(DISCORD, Answer(429, {"message": "You are being rate limited.", "retry_after": 0.25}))
    urls = [SecretStr(receiver.url + SLACK), SecretStr(receiver.url + DISCORD)]
    with Notifier(urls, timeout=2.0, max_retry_wait_s=3.0, sleep=sleeps.append) as notifier:
        assert notifier.send(Event("fill", "paper", "Sold 1 BTC", ts=WHEN)) == 2
    assert sleeps == [3.0, 0.25]  # Slack's header capped at 3 s; Discord's JSON retry_after
    assert len(receiver.at(SLACK)) == 2 and len(receiver.at(DISCORD)) == 2
    receiver.queue(SLACK, Answer(429, "slow down"), Answer(429, "slow down"))
    with Notifier([SecretStr(receiver.url + SLACK)], timeout=2.0, max_retry_wait_s=0.0) as notifier:
        assert notifier.send(Event("fill", "paper", "Sold 1 BTC", ts=WHEN)) == 0  # retried once only
        assert notifier.failed == 1
    assert len(receiver.at(SLACK)) == 4


def test_a_slow_webhook_times_out_and_counts(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.queue(SLACK, Answer(200, "ok", delay=0.5))
    with Notifier([SecretStr(receiver.url + SLACK)], timeout=0.1) as notifier:
        started = time.perf_counter()
        assert notifier.send(Event("error", "paper", "Broker down", ts=WHEN)) == 0
        assert time.perf_counter() - started < 0.45
        assert notifier.failed == 1
    assert "did not answer within 0.1 s" in caplog.text and TOKEN not in caplog.text


def test_callback_is_a_plain_function(receiver: Receiver) -> None:
    with Notifier([SecretStr(receiver.url + SLACK)], timeout=2.0) as notifier:
        on_event = notifier.callback
        assert on_event("refusal", {"account": "live", "title": "Order too large", "qty": 1e6}) == 1
        assert on_event("weird", {"note": "hello"}) == 1
    first, second = (r.json()["fks"] for r in receiver.at(SLACK))
    assert (first["kind"], first["account"], first["title"], first["fields"]) == (
        "refusal", "live", "Order too large", {"qty": 1e6}
    )  # fmt: skip
    assert (second["kind"], second["title"], second["fields"]) == (
        "info",
        "weird",
        {"kind": "weird", "note": "hello"},
    )


@pytest.mark.parametrize("form", ["comma", "json"])
def test_settings_urls_reach_every_webhook(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    slack, discord = receiver.url + SLACK, receiver.url + DISCORD
    value = f" {slack} , {discord} " if form == "comma" else json.dumps([slack, discord])
    monkeypatch.setenv("FKS_WEBHOOK_URLS", value)
    monkeypatch.setenv("FKS_WEBHOOK_TIMEOUT_S", "1.5")
    settings = Settings()
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    with Notifier.from_settings(settings) as notifier:
        assert notifier.timeout == 1.5
        assert notifier.send(Event("info", "paper", "Desk started", ts=WHEN)) == 2
    assert len(receiver.at(SLACK)) == 1 and len(receiver.at(DISCORD)) == 1


def test_no_urls_is_a_no_op_and_bad_urls_are_skipped_by_position(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with Notifier.from_settings(Settings()) as quiet:
        assert not quiet and quiet.send(Event("fill", "paper", "x")) == 0 and quiet.failed == 0
    urls = [
        SecretStr(f"hooks.slack.com/{TOKEN}"),
        SecretStr(receiver.url + SLACK),
        SecretStr(f"ftp://x/{TOKEN}"),
    ]
    with Notifier(urls, timeout=2.0) as notifier:
        assert notifier.send(Event("fill", "paper", "x", ts=WHEN)) == 1
    assert "webhook URL 1 of 3 is not an http(s) URL" in caplog.text
    assert "webhook URL 3 of 3 is not an http(s) URL" in caplog.text
    assert TOKEN not in caplog.text
