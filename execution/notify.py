"""Tell people what the execution desk did: fills, refusals, halts, errors, through webhooks.

::

    with Notifier.from_settings(get_settings()) as notifier:  # FKS_WEBHOOK_URLS; none: a no-op
        notifier.send(Event("fill", "paper", "Bought 10 SPX", {"qty": 10, "price": 4712.5}))
        on_event = notifier.callback                           # for code that wants a function
        on_event("halt", {"account": "paper", "title": "Daily loss limit hit", "loss": -0.031})
    # leaving the block closes its connections to the webhooks

One JSON body goes to every URL, and both Slack incoming webhooks and Discord webhooks accept it:

- ``text``: one markdown line; Slack's incoming webhooks post the ``text`` field (checked:
  docs.slack.dev/tools/python-slack-sdk/webhook, ``WebhookClient(url).send(text="Hello!")``; and
  the node SDK's ``IncomingWebhookSendArguments``, docs.slack.dev/tools/node-slack-sdk/reference/
  webhook, which lists ``text``, ``blocks``, ``attachments``, ``username``, ``icon_emoji``,
  ``channel``).
- ``content``: the same line; Discord's Execute Webhook takes ``content``, "the message contents
  (up to 2000 characters)" (discord.com/developers/docs/resources/webhook#execute-webhook, as
  discord-api-types' ``RESTPostAPIWebhookWithTokenJSONBody`` documents it). The line is cut to
  2000 UTF-16 code units (a bound on characters in any counting), so the one line fits both.
- ``username``: ``"fks"``; in both documented bodies (Discord's override of the webhook's name;
  Slack's node SDK's ``IncomingWebhookDefaultArguments``; a Slack app's webhook may keep its own).
- ``allowed_mentions``: ``{"parse": []}``, so that no text in an event can ping ``@everyone`` on
  Discord (same documented body).
- ``fks``: the event itself (kind, account, title, fields, ts) for receivers that parse JSON.

Each service reads its own fields; that each also ignores the other's (Slack ``content``, Discord
``text`` and ``fks``) is how both behave in practice but is not in either page checked above, and
was not tried against the live services here. The line uses only markdown both render alike:
Unicode emoji and backtick code spans.

Delivery never raises into the trading loop: a webhook that times out, refuses the connection or
answers 4xx/5xx is logged (its URL shown as ``scheme://host/…``: the path holds the token) and
counted in :attr:`Notifier.failed`. A 429 or 5xx answer is retried once after its
``Retry-After`` header, else the ``retry_after`` seconds of Discord's documented rate-limit body
(docs.discord.com/developers/topics/rate-limits), else 1 s, waiting at most ``max_retry_wait_s``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from providers.http import redact

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("fill", "refusal", "halt", "error", "info")
"""What an event can be."""

ICONS = {"fill": "✅", "refusal": "⛔", "halt": "🛑", "error": "❗", "info": "ℹ️"}
"""The emoji that opens each kind's line."""

MAX_CONTENT = 2000
"""Discord's limit on ``content``; the line is cut to it."""

USERNAME = "fks"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Event:
    """Something people should hear of.

    Args:
        kind: one of :data:`KINDS` (``fill``, ``refusal``, ``halt``, ``error``, ``info``).
        account: the account it happened on (may be empty).
        title: one short sentence, e.g. ``"Bought 10 SPX"``.
        fields: details, shown as ``name: `value``` in order (numbers, strings, times).
        ts: when it happened (default now); naive means UTC.

    Raises:
        ValueError: an unknown ``kind``.
    """

    kind: str
    account: str
    title: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=_utc_now)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {', '.join(KINDS)}")
        ts = self.ts if self.ts.tzinfo is not None else self.ts.replace(tzinfo=UTC)
        object.__setattr__(self, "ts", ts.astimezone(UTC))

    def line(self) -> str:
        """The event as one markdown line, at most :data:`MAX_CONTENT` characters."""
        head = f"{ICONS[self.kind]} {self.kind.upper()}"
        if self.account:
            head += f" [{_flat(self.account)}]"
        text = f"{head} {_flat(self.title)}"
        details = ", ".join(f"{_flat(str(k))}: `{_code(_plain(v))}`" for k, v in self.fields.items())
        if details:
            text += f" | {details}"
        text += f" | {self.ts:%Y-%m-%d %H:%M:%S} UTC"
        return _clip(text, MAX_CONTENT)

    def payload(self) -> dict[str, Any]:
        """The JSON body posted to every webhook (see the module docstring)."""
        text = self.line()
        return {
            "text": text,
            "content": text,
            "username": USERNAME,
            "allowed_mentions": {"parse": []},
            "fks": {
                "kind": self.kind,
                "account": self.account,
                "title": self.title,
                "fields": {str(k): _json(v) for k, v in self.fields.items()},
                "ts": self.ts.isoformat(),
            },
        }


class Notifier:
    """Posts events to webhooks; with no URLs every call is a no-op.

    Args:
        urls: Slack or Discord webhook URLs (``FKS_WEBHOOK_URLS``); one that is not http(s) with a
            host is skipped with a warning naming its position, never the URL.
        timeout: seconds one delivery may take.
        transport: an httpx transport to send through (default: the network).
        max_retry_wait_s: the longest wait before the one retry of a 429 or 5xx answer.
        sleep: how to wait (injectable).

    Attributes:
        delivered: deliveries that succeeded, since creation.
        failed: deliveries that failed (after their retry), since creation.
    """

    def __init__(
        self,
        urls: Sequence[SecretStr],
        timeout: float = 5.0,
        *,
        transport: httpx.BaseTransport | None = None,
        max_retry_wait_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name in ("httpx", "httpcore"):  # their INFO/DEBUG lines carry every URL, tokens and all
            logging.getLogger(name).setLevel(logging.WARNING)
        self._urls: list[str] = []
        for i, url in enumerate(urls, start=1):
            plain = url.get_secret_value().strip()
            parts = urlsplit(plain)
            if parts.scheme in ("http", "https") and parts.hostname:
                self._urls.append(plain)
            else:
                log.warning(
                    "webhook URL %d of %d is not an http(s) URL with a host; skipped "
                    "(check FKS_WEBHOOK_URLS)",
                    i,
                    len(urls),
                )
        self.timeout = timeout
        self.max_retry_wait_s = max_retry_wait_s
        self.sleep = sleep
        self.delivered = 0
        self.failed = 0
        self._http: httpx.Client | None = (
            httpx.Client(timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False)
            if self._urls
            else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Notifier:
        """A notifier of ``settings.webhook_urls`` with ``webhook_timeout_s``; ``kwargs`` go to
        the constructor."""
        return cls(settings.webhook_urls, settings.webhook_timeout_s, **kwargs)

    @property
    def targets(self) -> list[str]:
        """The webhooks, redacted (``scheme://host/…``): safe to show."""
        return [redacted_url(u) for u in self._urls]

    def __repr__(self) -> str:
        return f"Notifier({self.targets})"

    def __bool__(self) -> bool:
        """True when there is at least one webhook to send to."""
        return bool(self._urls)

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, event: Event) -> int:
        """Post ``event`` to every webhook; returns how many took it (2xx). Never raises."""
        if self._http is None:
            return 0
        try:
            payload = event.payload()
        except Exception as exc:  # a field that cannot be shown must not stop the trading loop
            log.warning("event %r could not be rendered for webhooks: %s", getattr(event, "kind", "?"), exc)
            self.failed += len(self._urls)
            return 0
        ok = 0
        for url in self._urls:
            if self._deliver(self._http, url, payload):
                ok += 1
        self.delivered += ok
        self.failed += len(self._urls) - ok
        return ok

    def callback(self, kind: str, details: Mapping[str, Any]) -> int:
        """``send`` for code that wants a plain function: ``details`` may hold ``account`` and
        ``title`` (default: the kind); the rest are the event's fields. An unknown ``kind`` is sent
        as ``info`` naming it. Never raises; returns how many webhooks took it."""
        rest = dict(details)
        account = str(rest.pop("account", "") or "")
        title = str(rest.pop("title", "") or kind)
        if kind not in KINDS:
            rest = {"kind": kind, **rest}
            kind = "info"
        try:
            event = Event(kind, account, title, rest)
        except Exception as exc:
            log.warning("could not build a %s event for webhooks: %s", kind, exc)
            return 0
        return self.send(event)

    def _deliver(self, http: httpx.Client, url: str, payload: dict[str, Any]) -> bool:
        shown = redacted_url(url)
        for attempt in (1, 2):
            try:
                response = http.post(url, json=payload)
            except httpx.TimeoutException:
                log.warning("webhook %s did not answer within %g s; not delivered", shown, self.timeout)
                return False
            except Exception as exc:  # refused, DNS, TLS, bad URL: never into the trading loop
                message = redact(str(exc), _secret_parts(url))
                log.warning("webhook %s failed (%s: %s); not delivered", shown, type(exc).__name__, message)
                return False
            status = response.status_code
            if 200 <= status < 300:
                return True
            if attempt == 1 and (status == 429 or status >= 500):
                wait = min(self.max_retry_wait_s, _wait_s(response))
                log.warning("webhook %s answered %d; retrying once in %.2f s", shown, status, wait)
                if wait > 0:
                    self.sleep(wait)
                continue
            log.warning("webhook %s answered %d; not delivered%s", shown, status, _status_hint(status))
            return False
        return False  # pragma: no cover


def redacted_url(url: str) -> str:
    """``url`` as ``scheme://host[:port]/…``: webhook paths (and queries) carry their tokens."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}/…"


def _secret_parts(url: str) -> list[str]:
    parts = urlsplit(url)
    return [s for s in (url, parts.path, parts.query, parts.password or "") if len(s) > 1]


def _wait_s(response: httpx.Response) -> float:
    """Seconds a 429/5xx answer asks to wait: ``Retry-After`` (seconds), else Discord's JSON
    ``retry_after``, else 1."""
    candidates: list[Any] = [response.headers.get("retry-after")]
    try:
        body = response.json()
        if isinstance(body, dict):
            candidates.append(body.get("retry_after"))
    except ValueError:
        pass
    for value in candidates:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return 1.0


def _status_hint(status: int) -> str:
    if status in (401, 403, 404, 410):
        return " (the webhook is gone or the URL is wrong: check FKS_WEBHOOK_URLS)"
    if status == 400:
        return " (the service refused the message body)"
    return ""


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-16 code units, ending in ``…`` when cut."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    out, used = [], 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > limit - 1:
            break
        out.append(ch)
        used += size
    return "".join(out) + "…"


def _flat(text: str) -> str:
    """One line: newlines and tabs as spaces."""
    return " ".join(str(text).split())


def _code(text: str) -> str:
    """Safe inside a backtick code span."""
    return _flat(text).replace("`", "'")


def _json(value: Any) -> Any:
    """``value`` as JSON carries it: numbers stay numbers (NaN and inf as strings), times as ISO."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _json(item())
        except (TypeError, ValueError):
            pass
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        return str(isoformat())
    return str(value)


def _plain(value: Any) -> str:
    """``value`` for the text line: floats to at most 10 significant digits."""
    plain = _json(value)
    if isinstance(plain, float):
        return f"{plain:.10g}"
    return "" if plain is None else str(plain)
