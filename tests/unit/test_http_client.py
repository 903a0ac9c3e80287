"""The providers' HTTP client against a loopback server: typed errors, retries, cache, redaction."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterator

import pytest

from config.providers import RetryPolicy
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited, Unavailable
from providers.http import CallRecord, HttpClient, backoff_delay, parse_retry_after, redacted_params
from tests.fixture_server import (
    FixtureServer,
    Reply,
    Request,
    cut_json,
    html_page,
    malformed_json,
    rate_limited,
    server_error,
    slow,
    truncated,
)

SECRET = "sk_live_0123456789abcdef"


class Recorder:
    """A gate that admits everything and keeps every call record."""

    def __init__(self) -> None:
        self.acquired = 0
        self.calls: list[CallRecord] = []

    def acquire(self, provider: str) -> None:
        self.acquired += 1

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)


def echo(request: Request) -> Reply:
    return Reply(200, {"path": request.path, "query": request.query})


@pytest.fixture(scope="module")
def server() -> Iterator[FixtureServer]:
    with FixtureServer(echo) as running:
        yield running


@pytest.fixture
def fresh(server: FixtureServer) -> FixtureServer:
    server.route = echo
    server.requests.clear()
    server.faults.clear()
    return server


def client(server: FixtureServer, **kwargs: object) -> tuple[HttpClient, list[float], Recorder]:
    sleeps: list[float] = []
    gate = Recorder()
    options: dict[str, object] = {
        "secrets": [SECRET],
        "retry": RetryPolicy(attempts=3, base_s=0.5, max_s=4.0, jitter=0.0, max_retry_after_s=30.0),
        "timeout": 0.5,
        "gate": gate,
        "sleep": sleeps.append,
    }
    options.update(kwargs)
    return HttpClient("demo", server.url, **options), sleeps, gate  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (server_error(500), Unavailable),
        (server_error(503), Unavailable),
        (slow(2.0), Unavailable),
        (truncated({"rows": list(range(200))}), Unavailable),
        (cut_json({"rows": list(range(200))}), Unavailable),
        (rate_limited(1.0), RateLimited),
        (Reply(418, {"msg": "banned"}, headers={"Retry-After": "2"}), RateLimited),
    ],
)
def test_transient_faults_are_retried_then_succeed(
    fresh: FixtureServer, fault: Reply, error: type[ProviderError]
) -> None:
    http, sleeps, gate = client(fresh)
    fresh.inject(fault, fault)
    assert http.get_json("/data", {"a": 1}) == {"path": "/data", "query": {"a": "1"}}
    assert len(fresh.requests) == 3 and len(sleeps) == 2
    assert [type(c.error) for c in gate.calls] == [error, error, type(None)]
    assert gate.acquired == 3  # every attempt passes the gate


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (server_error(503), Unavailable),
        (rate_limited(1.0), RateLimited),
        (html_page(), BadResponse),
        (malformed_json(), BadResponse),
        (cut_json({"rows": list(range(200))}), Unavailable),
        (Reply(401, {"error": "bad key"}), AuthError),
        (Reply(403, {"error": "forbidden"}), AuthError),
        (Reply(404, "not here"), NotSupported),
        (Reply(400, {"error": "bad request"}), BadResponse),
    ],
)
def test_each_fault_becomes_its_typed_error(
    fresh: FixtureServer, fault: Reply, error: type[ProviderError]
) -> None:
    http, _, _ = client(fresh)
    fresh.inject(*[fault] * 3)
    with pytest.raises(error, match=r"^demo: "):
        http.get_json("/data")
    retried = error in (Unavailable, RateLimited)
    assert len(fresh.requests) == (3 if retried else 1)  # bad bodies and refusals are not retried


def test_retry_after_is_honoured_and_a_longer_wait_fails_over(fresh: FixtureServer) -> None:
    http, sleeps, _ = client(fresh)
    fresh.inject(rate_limited(7.0))
    http.get_json("/data")
    assert sleeps == [7.0]  # longer than the 0.5 s backoff
    fresh.inject(rate_limited(120.0))
    with pytest.raises(RateLimited) as refused:
        http.get_json("/other")
    assert refused.value.retry_after == 120.0 and sleeps == [7.0]  # no wait beyond max_retry_after_s


def test_backoff_is_exponential_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(attempts=6, base_s=0.5, max_s=4.0, jitter=0.25)
    rng = random.Random(3)
    for attempt, nominal in enumerate([0.5, 1.0, 2.0, 4.0, 4.0], start=1):
        delays = [backoff_delay(policy, attempt, rng, None) for _ in range(200)]
        assert min(delays) >= nominal * 0.75 and max(delays) <= nominal * 1.25
        assert max(delays) - min(delays) > nominal * 0.2  # jitter actually spreads the retries
    assert backoff_delay(policy, 1, rng, retry_after=9.0) == 9.0


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("12", default=1.0) == 12.0
    assert parse_retry_after(None, default=1.5) == 1.5
    assert parse_retry_after("soon", default=2.0) == 2.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(later, default=1.0) <= 31


def test_cache_serves_repeats_within_ttl_only(fresh: FixtureServer) -> None:
    now = [100.0]
    http, _, _ = client(fresh, cache_ttl_s=60.0, clock=lambda: now[0])
    first = http.get_json("/quote", {"symbol": "X"})
    assert http.get_json("/quote", {"symbol": "X"}) == first and len(fresh.requests) == 1
    http.get_json("/quote", {"symbol": "Y"})  # other parameters are another entry
    assert len(fresh.requests) == 2
    now[0] += 61.0
    http.get_json("/quote", {"symbol": "X"})
    assert len(fresh.requests) == 3
    fresh.inject(server_error(503), server_error(503), server_error(503))
    with pytest.raises(Unavailable):
        http.get_json("/fresh")
    now[0] += 1.0
    assert http.get_json("/fresh") == {"path": "/fresh", "query": {}}  # errors are never cached


def test_secrets_never_appear_in_messages(fresh: FixtureServer) -> None:
    http, _, gate = client(fresh)
    fresh.route = lambda r: Reply(500, f"<html>upstream failed for {r.raw_query}</html>")
    with pytest.raises(Unavailable) as failed:
        http.get_json("/data", {"apikey": SECRET, "symbol": "X"})
    assert SECRET not in str(failed.value) and "apikey=***" in str(failed.value)
    assert all(SECRET not in c.url and SECRET not in str(c.error) for c in gate.calls)

    def leaky_check(body: object) -> None:
        raise BadResponse(f"the body quoted {SECRET}")

    fresh.route = echo
    with pytest.raises(BadResponse) as checked:
        http.get_json("/data", check=leaky_check)
    assert str(checked.value) == "demo: the body quoted ***"
    assert fresh.requests[-1].query == {}  # the secret was never sent where it was not asked for


def test_redacted_params_hide_credential_names_only() -> None:
    shown = redacted_params({"apiKey": "k", "access_token": "t", "symbol": "AAPL", "limit": 5})
    assert shown == {"apiKey": "***", "access_token": "***", "symbol": "AAPL", "limit": 5}


def test_credits_may_come_from_the_body(fresh: FixtureServer) -> None:
    http, _, gate = client(fresh)
    fresh.route = lambda r: Reply(200, {"status": {"credit_count": 3}, "data": []})
    http.get_json("/listings", credits=lambda body: body["status"]["credit_count"])
    assert gate.calls[-1].credits == 3.0
