"""Calls, credits and circuit-breaker state of the online providers (tables ``provider_usage`` and
``provider_state``).

``provider_usage`` keeps one row per provider and UTC day; :func:`record_calls` adds to it with an
atomic upsert (``INSERT ... ON CONFLICT (provider, day) DO UPDATE SET calls = calls + ...``), so
concurrent writers never lose a count. :func:`credits_used` and :func:`calls_used` sum it from a
day on (the start of a budget period); :func:`usage_summary` is what ``fks providers status``
shows. ``provider_state`` keeps the last known breaker of each provider (:func:`save_breaker`,
:func:`load_breakers`) so that a new process starts with the breaker the last one left.

Error texts are stored scrubbed: URL passwords, credential-looking query parameters and
``name=value`` pairs (``apikey=...``, ``token=...``), and bearer tokens become ``***``.

Like every repository here, the functions take a Connection; the caller owns the transaction.
Nothing here imports :mod:`providers` (storage sits below it): the breaker is stored from any
object with the fields of :class:`BreakerFields`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage._redact import REDACTED, _scrub_url
from storage._time import from_ms as _from_ms
from storage._time import now_ms as _now_ms
from storage._time import to_ms as _to_ms
from storage._time import utc as _utc
from storage.schema import ProviderStateRow, ProviderUsageRow

BREAKER_STATES: tuple[str, ...] = ("closed", "open", "half_open")
USAGE_COLUMNS: tuple[str, ...] = (
    "provider",
    "calls",
    "credits",
    "failures",
    "rate_limited",
    "last_error",
    "last_call",
)
_MAX_ERROR_CHARS = 2_000
_MAX_PROVIDER_CHARS = 32

_usage: Table = ProviderUsageRow.__table__  # type: ignore[assignment]
_state: Table = ProviderStateRow.__table__  # type: ignore[assignment]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_URL_USERINFO = re.compile(r"(://[^/\s:@]*):[^/\s@]+@")
_SECRET_PAIR = re.compile(
    r"(?i)\b([\w.-]*(?:key|token|secret|passw(?:or)?d|signature|auth|credential|cookie)[\w.-]*)"
    r"([\"']?\s*[=:]\s*[\"']?)(?!\*\*\*|(?:bearer|basic)\s)([^\s&'\",;)}\]]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]+")


def scrub_error(text: str | None) -> str | None:
    """``text`` with secrets replaced by ``***`` and cut to 2000 characters (None stays None).

    URL passwords, credential query parameters, ``name=value``/``name: value`` pairs whose name
    looks like a credential (``apikey``, ``api_key``, ``token``, ``secret``, ``password``, ...) and
    ``Bearer``/``Basic`` tokens are redacted.
    """
    if text is None:
        return None
    text = str(text)
    text = _URL.sub(lambda m: _scrub_url(m.group(0)), text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def _check_provider(provider: object) -> str:
    if not isinstance(provider, str) or not provider.strip() or provider != provider.strip():
        raise ValueError(f"provider must be a non-empty name without surrounding spaces, got {provider!r}")
    if len(provider) > _MAX_PROVIDER_CHARS:
        raise ValueError(f"provider name must be at most {_MAX_PROVIDER_CHARS} characters, got {provider!r}")
    return provider


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _day(when: dt.datetime | pd.Timestamp | str) -> str:
    """The UTC calendar day of ``when`` as ``YYYY-MM-DD``."""
    return _utc(when).strftime("%Y-%m-%d")


def _insert(conn: Connection, table: Table) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite_insert(table)
    if name == "postgresql":
        return pg_insert(table)
    raise NotImplementedError(
        f"provider usage store supports SQLite and PostgreSQL, not {name!r}; "
        "use a sqlite:/// or postgresql:// URL"
    )


def record_calls(
    conn: Connection,
    provider: str,
    *,
    calls: int = 1,
    credits: float = 0.0,
    failures: int = 0,
    rate_limited: int = 0,
    last_error: str | None = None,
    at: dt.datetime | pd.Timestamp | None = None,
) -> None:
    """Add ``calls``, ``credits``, ``failures`` and ``rate_limited`` to ``provider``'s row of the
    UTC day of ``at`` (default: now), creating it when missing; atomic under concurrent writers.

    ``last_error`` (scrubbed of secrets, see :func:`scrub_error`) replaces the day's last error
    when given; the row's ``updated_at`` becomes the latest ``at`` recorded (the last call).

    Raises:
        ValueError: when ``provider`` is empty or too long, a count is negative or not an
            integer, or ``credits`` is negative or not finite.
        NotImplementedError: for a database other than SQLite or PostgreSQL.
    """
    _check_provider(provider)
    for name, value in (("calls", calls), ("failures", failures), ("rate_limited", rate_limited)):
        _check_count(name, value)
    if isinstance(credits, bool) or not isinstance(credits, int | float) or not math.isfinite(credits):
        raise ValueError(f"credits must be a finite number, got {credits!r}")
    if credits < 0:
        raise ValueError(f"credits must not be negative, got {credits!r}")
    stamp = _now_ms() if at is None else _to_ms(at, "at")
    day = _from_ms(stamp).strftime("%Y-%m-%d")
    stmt = _insert(conn, _usage).values(
        provider=provider,
        day=day,
        calls=calls,
        credits=float(credits),
        failures=failures,
        rate_limited=rate_limited,
        last_error=scrub_error(last_error),
        updated_at=stamp,
    )
    new = stmt.excluded
    latest = func.greatest if conn.dialect.name == "postgresql" else func.max
    stmt = stmt.on_conflict_do_update(
        index_elements=[_usage.c.provider, _usage.c.day],
        set_={
            "calls": _usage.c.calls + new.calls,
            "credits": _usage.c.credits + new.credits,
            "failures": _usage.c.failures + new.failures,
            "rate_limited": _usage.c.rate_limited + new.rate_limited,
            "last_error": func.coalesce(new.last_error, _usage.c.last_error),
            "updated_at": latest(_usage.c.updated_at, new.updated_at),
        },
    )
    conn.execute(stmt)


def _sum_since(conn: Connection, column: Any, provider: str, since: dt.datetime | pd.Timestamp) -> Any:
    _check_provider(provider)
    query = select(func.coalesce(func.sum(column), 0)).where(
        _usage.c.provider == provider, _usage.c.day >= _day(since)
    )
    return conn.execute(query).scalar_one()


def credits_used(conn: Connection, provider: str, since: dt.datetime | pd.Timestamp) -> float:
    """Credits ``provider`` used from the UTC day of ``since`` on (naive ``since`` is UTC).

    The table counts per day, so ``since`` is taken at its day's start: pass the start of a
    budget period (see :func:`providers.ratelimit.period_start`).
    """
    return float(_sum_since(conn, _usage.c.credits, provider, since))


def calls_used(conn: Connection, provider: str, since: dt.datetime | pd.Timestamp) -> int:
    """Calls ``provider`` made from the UTC day of ``since`` on (see :func:`credits_used`)."""
    return int(_sum_since(conn, _usage.c.calls, provider, since))


def _empty_summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "provider": pd.Series(dtype=object),
            "calls": pd.Series(dtype="int64"),
            "credits": pd.Series(dtype="float64"),
            "failures": pd.Series(dtype="int64"),
            "rate_limited": pd.Series(dtype="int64"),
            "last_error": pd.Series(dtype=object),
            "last_call": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


def usage_summary(conn: Connection, since: dt.datetime | pd.Timestamp | None = None) -> pd.DataFrame:
    """Usage per provider, summed over the days from ``since``'s UTC day on (all days for None).

    Returns:
        One row per provider that has usage, sorted by provider, with columns ``provider``,
        ``calls``, ``credits``, ``failures``, ``rate_limited``, ``last_error`` (the latest error
        recorded in the window, or None) and ``last_call`` (UTC timestamp of the last recorded call).
    """
    query = select(
        _usage.c.provider,
        _usage.c.calls,
        _usage.c.credits,
        _usage.c.failures,
        _usage.c.rate_limited,
        _usage.c.last_error,
        _usage.c.updated_at,
    )
    if since is not None:
        query = query.where(_usage.c.day >= _day(since))
    rows = conn.execute(query).all()
    if not rows:
        return _empty_summary()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[*USAGE_COLUMNS[:-1], "updated_at"])
    frame = frame.sort_values(["provider", "updated_at"], kind="stable")
    sums = frame.groupby("provider", sort=True)[["calls", "credits", "failures", "rate_limited"]].sum()
    errors = frame.dropna(subset=["last_error"]).groupby("provider")["last_error"].last()
    last = frame.groupby("provider")["updated_at"].max()
    out = sums.astype({"calls": "int64", "credits": "float64", "failures": "int64", "rate_limited": "int64"})
    out["last_error"] = pd.Series(
        [None if pd.isna(e) else str(e) for e in errors.reindex(out.index)], index=out.index, dtype=object
    )
    out["last_call"] = pd.to_datetime(last.reindex(out.index).astype("int64"), unit="ms", utc=True)
    return out.reset_index()[list(USAGE_COLUMNS)]


class BreakerFields(Protocol):
    """What :func:`save_breaker` reads: the breaker's provider, state (``closed``, ``open`` or
    ``half_open``), consecutive failures, when it opened (epoch milliseconds UTC or None) and
    the last error."""

    @property
    def provider(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def consecutive_failures(self) -> int: ...

    @property
    def opened_at(self) -> int | None: ...

    @property
    def last_error(self) -> str | None: ...


@dataclass(frozen=True)
class BreakerRecord:
    """One row of ``provider_state``: ``opened_at`` in epoch milliseconds UTC (None when never
    opened or closed again), ``updated_at`` a UTC timestamp (None before it is stored)."""

    provider: str
    state: str
    consecutive_failures: int
    opened_at: int | None
    last_error: str | None
    updated_at: pd.Timestamp | None = None


def save_breaker(
    conn: Connection, breaker: BreakerFields, *, at: dt.datetime | pd.Timestamp | None = None
) -> None:
    """Store ``breaker`` as the provider's current breaker (insert or replace its row).

    ``last_error`` is scrubbed of secrets (see :func:`scrub_error`); ``updated_at`` is ``at``
    (default: now).

    Raises:
        ValueError: when the provider is empty, the state is not ``closed``, ``open`` or
            ``half_open``, or the failure count is negative.
        NotImplementedError: for a database other than SQLite or PostgreSQL.
    """
    provider = _check_provider(breaker.provider)
    state = str(breaker.state)
    if state not in BREAKER_STATES:
        raise ValueError(f"breaker state must be one of {', '.join(BREAKER_STATES)}, got {state!r}")
    failures = _check_count("consecutive_failures", breaker.consecutive_failures)
    opened_at = None if breaker.opened_at is None else int(breaker.opened_at)
    values = {
        "state": state,
        "consecutive_failures": failures,
        "opened_at": opened_at,
        "last_error": scrub_error(breaker.last_error),
        "updated_at": _now_ms() if at is None else _to_ms(at, "at"),
    }
    stmt = _insert(conn, _state).values(provider=provider, **values)
    stmt = stmt.on_conflict_do_update(index_elements=[_state.c.provider], set_=values)
    conn.execute(stmt)


def load_breakers(conn: Connection) -> dict[str, BreakerRecord]:
    """Every stored breaker, by provider."""
    query = select(
        _state.c.provider,
        _state.c.state,
        _state.c.consecutive_failures,
        _state.c.opened_at,
        _state.c.last_error,
        _state.c.updated_at,
    ).order_by(_state.c.provider)
    return {
        row.provider: BreakerRecord(
            provider=row.provider,
            state=row.state,
            consecutive_failures=int(row.consecutive_failures),
            opened_at=None if row.opened_at is None else int(row.opened_at),
            last_error=row.last_error,
            updated_at=_from_ms(row.updated_at),
        )
        for row in conn.execute(query)
    }
