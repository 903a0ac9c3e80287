"""Events as webhook bodies (no network): the markdown line, its limit, JSON-safe fields, URL
redaction, and FKS_WEBHOOK_URLS in both of its forms."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from config.settings import Settings
from execution.notify import KINDS, MAX_CONTENT, Event, Notifier, redacted_url

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_kinds_are_checked_and_times_are_utc() -> None:
    assert KINDS == ("fill", "refusal", "halt", "error", "info")
    with pytest.raises(ValueError, match="'fills' is not one of fill, refusal, halt, error, info"):
        Event("fills", "paper", "x")
    naive = Event("info", "paper", "x", ts=datetime(2026, 3, 4, 5, 6, 7))
    assert naive.ts == WHEN
    paris = Event("info", "paper", "x", ts=datetime(2026, 3, 4, 6, 6, 7, tzinfo=timezone(timedelta(hours=1))))
    assert paris.ts == WHEN and paris.ts.utcoffset() == timedelta(0)
    assert abs(Event("info", "paper", "x").ts - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_line_is_one_line_of_markdown_both_services_render() -> None:
    event = Event(
        "refusal",
        "acct\n1",
        "Order\trefused:\nover the limit",
        {"qty": np.int64(12), "price": np.float64(1 / 3), "at": pd.Timestamp("2026-03-04 05:00", tz="UTC"),
         "why": "uses `ticks`", "none": None},
        ts=WHEN,
    )  # fmt: skip
    assert event.line() == (
        "⛔ REFUSAL [acct 1] Order refused: over the limit | qty: `12`, price: `0.3333333333`, "
        "at: `2026-03-04T05:00:00+00:00`, why: `uses 'ticks'`, none: `` | 2026-03-04 05:06:07 UTC"
    )
    assert (
        Event("info", "", "Desk started", ts=WHEN).line() == "ℹ️ INFO Desk started | 2026-03-04 05:06:07 UTC"
    )


def test_fields_stay_json_numbers_and_non_finite_become_strings() -> None:
    fields = {"qty": np.int64(3), "px": np.float32(2.5), "bad": float("nan"), "ok": True}
    payload = Event("fill", "paper", "Bought", fields, ts=WHEN).payload()
    assert payload["fks"]["fields"] == {"qty": 3, "px": 2.5, "bad": "nan", "ok": True}
    assert type(payload["fks"]["fields"]["qty"]) is int
    json.dumps(payload, allow_nan=False)  # strict JSON: both services reject NaN tokens


def test_the_line_fits_discords_limit_in_utf16_units() -> None:
    wide = Event("halt", "paper", "🛑" * 3000, ts=WHEN).line()  # each is 2 UTF-16 code units
    assert len(wide.encode("utf-16-le")) // 2 <= MAX_CONTENT and wide.endswith("…")
    assert len(wide) < MAX_CONTENT
    narrow = Event("fill", "paper", "x" * 3000, ts=WHEN).line()  # ✅ is one UTF-16 unit
    assert len(narrow) == MAX_CONTENT
    halted = Event("halt", "paper", "x" * 3000, ts=WHEN).line()  # 🛑 is two
    assert len(halted) == MAX_CONTENT - 1
    exact = Event("info", "", "y" * (MAX_CONTENT - 40), ts=WHEN).line()
    assert not exact.endswith("…") and len(exact) <= MAX_CONTENT


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/…"),
        ("https://discord.com/api/webhooks/1/SECRET?wait=true", "https://discord.com/…"),
        ("http://user:SECRET@127.0.0.1:8080/x/SECRET", "http://127.0.0.1:8080/…"),
        ("http://[::1]:9000/SECRET", "http://[::1]:9000/…"),
    ],
)
def test_urls_are_shown_as_scheme_and_host_only(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert "SECRET" not in repr(Notifier([SecretStr(url)]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example/1,https://b.example/2", ["https://a.example/1", "https://b.example/2"]),
        (" https://a.example/1 , , https://b.example/2 ", ["https://a.example/1", "https://b.example/2"]),
        ('["https://a.example/1", "https://b.example/2"]', ["https://a.example/1", "https://b.example/2"]),
        ("https://a.example/only", ["https://a.example/only"]),
        ("", []),
        ("[]", []),
    ],
    ids=["comma", "comma_spaces", "json", "one", "empty", "json_empty"],
)
def test_webhook_urls_setting_accepts_comma_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("FKS_WEBHOOK_URLS", value)
    settings = Settings()
    assert [u.get_secret_value() for u in settings.webhook_urls] == expected
    assert all(isinstance(u, SecretStr) for u in settings.webhook_urls)
    assert "example" not in repr(settings)


def test_a_malformed_setting_is_never_quoted_and_its_urls_are_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FKS_WEBHOOK_URLS", '["https://a.example/TOKEN1", 7')
    settings = Settings()  # pydantic would quote the raw value in an error: it is not raised
    assert "TOKEN1" not in repr(settings)
    notifier = Notifier.from_settings(settings)
    assert not notifier and notifier.send(Event("fill", "paper", "x")) == 0
    assert "webhook URL 2 of 2 is not an http(s) URL" in caplog.text and "TOKEN1" not in caplog.text
    assert (
        Settings(webhook_urls=["https://a.example/x"]).webhook_urls[0].get_secret_value()
        == "https://a.example/x"
    )


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERVICE_URL", "SERVICE_API_KEY", "SERVICE_TIMEOUT_S", "WEBHOOK_URLS", "WEBHOOK_TIMEOUT_S"):
        monkeypatch.delenv(f"FKS_{name}", raising=False)
    settings = Settings()
    assert settings.webhook_urls == []
    assert settings.service_url == "http://127.0.0.1:8000" and settings.service_api_key is None
    assert settings.service_timeout_s == 10.0 and settings.webhook_timeout_s == 5.0
    for name in ("service_url", "service_api_key", "service_timeout_s", "webhook_urls", "webhook_timeout_s"):
        assert Settings.model_fields[name].description, name
