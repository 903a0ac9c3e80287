"""An API key never leaks in any encoding: every online adapter is given a key full of characters
that URLs and forms encode (``+``, ``/``, ``=``), and a provider that answers 500 quoting the request
back, raw, percent-encoded (both cases), form-encoded, JSON-escaped and as HTTP basic auth."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pandas as pd
import pytest
from pydantic import SecretStr

from config.providers import ONLINE_PROVIDERS
from providers.base import ProviderError
from providers.factory import build_adapter
from providers.http import secret_forms
from tests.fixture_server import FixtureServer, Reply, Request
from tests.provider_fakes import make_config, policy

KEY = "k+y/SECRET123=="
"""The issue's key: '+', '/' and '=' are all rewritten by URL encoding."""


ENCODINGS = {
    "raw": lambda key: key,
    "percent": lambda key: quote(key, safe=""),
    "percent_lower": lambda key: quote(key, safe="").lower().replace("secret", "SECRET"),
    "percent_keep_slash": lambda key: quote(key, safe="/"),
    "form": quote_plus,
    "json": lambda key: json.dumps(key)[1:-1],
    "basic": lambda key: base64.b64encode(f"{key}:".encode()).decode(),
}
"""How a broken upstream may quote the key it received (the server sees it decoded)."""


def _quoting(encoding: str) -> Callable[[Request], Reply]:
    """A broken upstream answering 500 that quotes the key it got, in ``encoding``."""

    def route(request: Request) -> Reply:
        got = [v for v in (*request.query.values(), *request.headers.values()) if KEY in v]
        quoted = ENCODINGS[encoding](KEY) if got else "no key"
        return Reply(500, f"invalid key {quoted} for this plan")

    return route


def test_every_form_of_the_key_is_known() -> None:
    forms = secret_forms(KEY)
    for form in (
        "k+y/SECRET123==",
        "k%2By%2FSECRET123%3D%3D",
        "k%2by%2fSECRET123%3d%3d",
        "k%2By/SECRET123%3D%3D",
    ):
        assert form in forms, form
    assert base64.b64encode(b"k+y/SECRET123==:").decode() in forms
    assert secret_forms("") == []


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("name", ONLINE_PROVIDERS)
def test_no_adapter_leaks_the_key_in_any_encoding(
    name: str, encoding: str, settings: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = make_config(**{name: policy(retry={"attempts": 1})})
    with FixtureServer(_quoting(encoding)) as server:
        cfg = settings.model_copy(update={f"{name}_base_url": server.url})  # type: ignore[attr-defined]
        if name == "sec_edgar":
            cfg = cfg.model_copy(update={"sec_edgar_user_agent": "Test Person test@example.com"})
        adapter = build_adapter(name, cfg, config.providers[name], api_key=SecretStr(KEY))
        start = pd.Timestamp("2024-01-02", tz="UTC")
        symbol = {"binance": "BTCUSDT", "coingecko": "bitcoin", "coinmarketcap": "BTC"}.get(name, "AAPL")
        try:
            adapter.fetch_bars(symbol, "1d", start, start + pd.Timedelta(days=5))
        except ProviderError as exc:
            message = f"{exc!s} {exc!r}"
        else:  # pragma: no cover - the server only answers 500
            pytest.fail(f"{name}: a 500 was not an error")
        sent = any(KEY in " ".join([*r.query.values(), *r.headers.values()]) for r in server.requests)
    if not sent:
        pytest.skip(f"{name} sends no key for daily bars")
    assert "500" in message and "invalid key ***" in message, message
    for form in secret_forms(KEY):
        assert form not in message, f"{name}: the key leaked as {form!r} into the error"
        assert form not in caplog.text, f"{name}: the key leaked as {form!r} into the logs"
