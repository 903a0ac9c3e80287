"""The provider manager: every online fetch goes through it.

For one asset and timeframe, :meth:`ProviderManager.fetch` asks the providers of the asset class
in the priority order of ``config/providers.yaml`` (only those for which the asset names a
provider symbol and whose adapter serves the timeframe) and returns the first answer:

* **Failover.** ``RateLimited``, ``Unavailable``, ``BadResponse`` and ``AuthError`` (refused
  credentials) count as failures of the provider: its circuit breaker hears of them and the next
  provider is asked. ``NotSupported`` (the provider lacks the symbol, timeframe or range) and a
  spent credit budget (``BudgetExceeded``) move on too but leave the breaker alone: they say
  nothing about the provider's health. A provider that needs a key and has none is skipped
  without a request (``AuthError`` naming the setting). An empty frame is an answer (no bars in
  the range), not a failure.
* **Circuit breaker** per provider (``breaker`` in the policy): open after
  ``failure_threshold`` failures in a row, refusing calls without a request; half-open after
  ``reset_timeout_s`` (one trial call); closed again after ``half_open_successes`` good trials.
  Its state is loaded from and saved to ``provider_state`` so other processes (``fks providers
  status``) see it, and a new process starts where the last one left.
* **Rate limit and budget** per provider, enforced per HTTP request (paging included) by the
  manager's :class:`~providers.http.Gate`: a credit-budget check (where the policy has a
  ``budget``; the credits used this period are read from ``provider_usage``) then a token bucket
  (``rate``). Every request is metered in ``provider_usage`` (calls, credits, failures, 429s,
  last error) in its own short transaction.
* **Retries** with exponential backoff and jitter honouring ``Retry-After``, and the TTL response
  cache, live in each adapter's :class:`~providers.http.HttpClient`, configured from the policy.
* **Splits.** :meth:`ProviderManager.fetch_splits` asks the providers of the chain that report
  splits (:func:`providers.base.provides_splits`) with the same failover, breakers, limits and
  metering, and returns the first answer.
* **Cross-verification** (:class:`providers.verify.CrossVerifier`). After a successful fetch, the
  last ``verification.bars`` bars are asked of the next provider that can serve them (see
  :meth:`ProviderManager.fetch`) and compared with :func:`providers.verify.compare`, through the
  same breakers, limits and metering; the check is recorded in ``bar_verifications`` and each
  disagreement in ``provider_discrepancies``. Policy ``warn`` keeps the primary's bars and logs a
  warning, ``prefer_primary`` keeps them quietly, ``fail`` raises
  :class:`~providers.verify.Discrepant`. No reachable second source: recorded as ``skipped``,
  the fetch still succeeds.

API keys (from settings, or ``api_keys`` resolved by the task layer from Prefect Secret blocks)
never appear in logs, exception messages, :class:`Attempt` texts or database rows: every text the
manager keeps or raises is scrubbed of them.

Thread-safe: Prefect maps tasks onto threads, and all of them share one manager per process
(``tasks.providers.manager_for``), hence one bucket, breaker and cache per provider.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import httpx
import pandas as pd
from pydantic import SecretStr
from sqlalchemy import Engine

from config.assets import AssetClass, AssetSpec
from config.providers import ProviderPolicy, ProvidersConfig, load_providers_config
from config.settings import Settings
from market.bars import Timeframe, empty_bars
from providers.base import (
    AuthError,
    NotSupported,
    ProviderError,
    RateLimited,
    Unavailable,
    fetch_splits,
    provides_splits,
)
from providers.breaker import BreakerSnapshot, BreakerState, CircuitBreaker, CircuitOpen
from providers.factory import adapter_class, build_adapter
from providers.http import CallRecord, Gate, redact
from providers.online import OnlineProvider, clip, utc
from providers.ratelimit import BudgetExceeded, CreditBudget, Period, TokenBucket, period_start
from providers.verify import CrossVerifier, VerificationOutcome
from storage.assets import get_asset
from storage.corporate_actions import CorporateAction
from storage.provider_usage import (
    BreakerRecord,
    calls_used,
    credits_used,
    load_breakers,
    record_calls,
    save_breaker,
    usage_summary,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "FetchResult",
    "ProviderManager",
    "ProviderStatus",
    "SplitsResult",
    "VerificationOutcome",
]


@dataclass(frozen=True)
class Attempt:
    """A provider that was asked (or skipped) and did not answer: ``kind`` is the error's class
    name (``RateLimited``, ``Unavailable``, ``CircuitOpen``, ``NotSupported``, ...), ``error`` its
    message, scrubbed of secrets."""

    provider: str
    error: str
    kind: str

    def __str__(self) -> str:
        return f"{self.provider}: {self.kind}: {self.error}"


@dataclass
class FetchResult:
    """What :meth:`ProviderManager.fetch` got: canonical ``bars`` with ``start <= ts < end`` from
    ``provider``, the providers that failed or were skipped before it (``attempts``, in order) and
    the cross-verification (None when not asked for, disabled, or no bars)."""

    bars: pd.DataFrame
    provider: str
    attempts: list[Attempt] = field(default_factory=list)
    verification: VerificationOutcome | None = None


@dataclass
class SplitsResult:
    """What :meth:`ProviderManager.fetch_splits` got: the splits (``actions``, their ``symbol`` the
    FKS symbol, sorted by ex-date) from ``provider``, and the providers that failed or were
    skipped before it (``attempts``, in order)."""

    actions: list[CorporateAction]
    provider: str
    attempts: list[Attempt] = field(default_factory=list)


class AllProvidersFailed(Unavailable):
    """No provider of the chain could deliver the bars (or splits); ``attempts`` says what each one did."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


@dataclass(frozen=True)
class ProviderStatus:
    """One provider as ``fks providers status`` shows it.

    ``state`` is the breaker (``open`` shown as ``half_open`` once its reset timeout has passed);
    ``calls_today`` counts the current UTC day; ``calls_period``/``credits_period`` the current
    budget ``period`` (``day`` or ``month``; ``month`` for providers without a budget);
    ``budget``/``budget_left`` are None without a budget. ``rate`` is the token bucket in words.
    """

    name: str
    enabled: bool
    state: str
    consecutive_failures: int
    opened_at: pd.Timestamp | None
    calls_today: int
    period: str
    calls_period: int
    credits_period: float
    budget: int | None
    budget_left: float | None
    last_error: str | None
    rate: str


def rate_text(policy: ProviderPolicy) -> str:
    """The token bucket of ``policy`` in words: ``300 per 60 s (burst 10)``."""
    rate = policy.rate
    return f"{rate.requests:g} per {rate.per_seconds:g} s (burst {rate.capacity:g})"


class _Scrubber:
    """Removes the values of API keys from texts (on top of the HTTP client's own redaction)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)

    def error(self, exc: BaseException) -> BaseException:
        """``exc`` itself when its message holds no secret, else a copy of the same class whose
        message is scrubbed (built without calling ``__init__``, so any error class works)."""
        text = str(exc)
        clean = self(text)
        if clean == text:
            return exc
        copy = type(exc).__new__(type(exc))
        Exception.__init__(copy, clean)
        copy.__dict__.update(exc.__dict__)
        return copy


class _ProviderGate:
    """The :class:`~providers.http.Gate` of one provider: budget check and token bucket before a
    request, metering after it."""

    def __init__(
        self,
        bucket: TokenBucket,
        budget: CreditBudget | None,
        meter: Callable[[CallRecord], None],
    ) -> None:
        self.bucket = bucket
        self.budget = budget
        self._meter = meter

    def acquire(self, provider: str) -> None:
        """Block until the token bucket admits one more request.

        Raises:
            BudgetExceeded: when the provider's credit budget for the period is spent.
        """
        if self.budget is not None:
            self.budget.check(1.0)
        self.bucket.acquire()

    def record(self, call: CallRecord) -> None:
        """Meter one finished request in ``provider_usage``."""
        self._meter(call)


@dataclass
class _Runtime:
    """Everything the manager keeps for one provider."""

    name: str
    policy: ProviderPolicy
    gate: _ProviderGate
    breaker: CircuitBreaker
    adapter: OnlineProvider
    key_missing: bool


class ProviderManager:
    """Fetch bars from the online providers with failover, breakers, rate limits, budgets,
    metering and cross-verification (see the module docstring).

    ``config`` defaults to ``load_providers_config(settings.providers_file)``. ``api_keys`` maps
    provider names to keys that override the settings' ``FKS_<PROVIDER>_API_KEY``. ``sleep`` and
    ``clock`` (monotonic seconds) drive token buckets, breakers and retries; ``wall_clock``
    (epoch seconds) dates usage rows and budget periods; ``transport`` is handed to every HTTP
    client. Providers are set up lazily, on first use, and kept for the manager's life.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        config: ProvidersConfig | None = None,
        api_keys: Mapping[str, SecretStr] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.config = config if config is not None else load_providers_config(settings.providers_file)
        self.api_keys: dict[str, SecretStr] = dict(api_keys or {})
        self.sleep = sleep
        self.clock = clock
        self.wall_clock = wall_clock
        self.transport = transport
        self._rng = rng
        self._lock = threading.Lock()
        self._runtimes: dict[str, _Runtime] = {}
        secrets = [k.get_secret_value() for k in self.api_keys.values()]
        for name in self.config.providers:
            key = settings.provider_api_key(name)
            if key is not None:
                secrets.append(key.get_secret_value())
        self._scrub = _Scrubber(secrets)

    # -- life ----------------------------------------------------------------------------------

    def __enter__(self) -> ProviderManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every provider's HTTP connections (the manager can set them up again)."""
        with self._lock:
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            runtime.adapter.close()

    # -- set-up --------------------------------------------------------------------------------

    def _key(self, name: str) -> SecretStr | None:
        key = self.api_keys.get(name)
        if key is not None and key.get_secret_value():
            return key
        return self.settings.provider_api_key(name)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall_clock(), tz=dt.UTC)

    def _policy(self, name: str) -> ProviderPolicy:
        policy = self.config.providers.get(name)
        if policy is None:
            known = ", ".join(self.config.providers) or "none"
            raise NotSupported(f"provider {name!r} is not in providers.yaml (configured: {known})")
        return policy

    def _runtime(self, name: str) -> _Runtime:
        """The provider's adapter, gate and breaker, set up on first use."""
        with self._lock:
            runtime = self._runtimes.get(name)
            if runtime is None:
                runtime = self._build(name)
                self._runtimes[name] = runtime
            return runtime

    def _build(self, name: str) -> _Runtime:
        policy = self._policy(name)
        bucket = TokenBucket(policy.rate, clock=self.clock, sleep=self.sleep, name=name)
        budget = None
        if policy.budget is not None:
            period: Period = policy.budget.period

            def used() -> float:
                with self.engine.connect() as conn:
                    return credits_used(conn, name, period_start(period, self._now()))

            budget = CreditBudget(name, policy.budget, used, wall_clock=self.wall_clock)
        gate = _ProviderGate(bucket, budget, self._meter)
        with self.engine.connect() as conn:
            record = load_breakers(conn).get(name)
        breaker = self._breaker(name, policy, record)
        key = self._key(name)
        adapter = build_adapter(
            name,
            self.settings,
            policy,
            api_key=key,
            gate=gate,
            sleep=self.sleep,
            rng=self._rng if self._rng is not None else random.Random(),
            clock=self.clock,
            transport=self.transport,
        )
        return _Runtime(name, policy, gate, breaker, adapter, key_missing=adapter.needs_key and key is None)

    def _breaker(self, name: str, policy: ProviderPolicy, record: BreakerRecord | None) -> CircuitBreaker:
        def save(snapshot: BreakerSnapshot) -> None:
            with self.engine.begin() as conn:
                save_breaker(conn, snapshot, at=self._now())

        if record is None:
            return CircuitBreaker(
                name, policy.breaker, clock=self.clock, wall_clock=self.wall_clock, on_change=save
            )
        return CircuitBreaker.from_record(
            record, policy.breaker, clock=self.clock, wall_clock=self.wall_clock, on_change=save
        )

    def gate(self, provider: str) -> Gate:
        """The rate limit and meter of ``provider``, for code that talks to it outside
        :meth:`fetch` (SEC EDGAR company data).

        Raises:
            NotSupported: when ``provider`` is not in providers.yaml.
        """
        return self._runtime(provider).gate

    def adapter(self, provider: str) -> OnlineProvider:
        """The adapter the manager uses for ``provider`` (behind its gate).

        Raises:
            NotSupported: when ``provider`` is not in providers.yaml.
        """
        return self._runtime(provider).adapter

    def breaker(self, provider: str) -> CircuitBreaker:
        """The circuit breaker of ``provider`` in this process.

        Raises:
            NotSupported: when ``provider`` is not in providers.yaml.
        """
        return self._runtime(provider).breaker

    # -- metering ------------------------------------------------------------------------------

    def _meter(self, call: CallRecord) -> None:
        """Add one finished request to ``provider_usage`` (its own short transaction)."""
        error = call.error
        failed = error is not None
        try:
            with self.engine.begin() as conn:
                record_calls(
                    conn,
                    call.provider,
                    calls=1,
                    credits=max(0.0, float(call.credits)),
                    failures=int(failed),
                    rate_limited=int(isinstance(error, RateLimited)),
                    last_error=self._scrub(f"{type(error).__name__}: {error}") if failed else None,
                    at=self._now(),
                )
        except Exception as exc:  # metering must never turn a good answer into a failure
            log.warning("%s: could not record usage: %s", call.provider, self._scrub(str(exc)))

    def _save_breaker(self, runtime: _Runtime) -> None:
        """Store the breaker after a counted outcome (failure counts change without a transition)."""
        try:
            with self.engine.begin() as conn:
                save_breaker(conn, runtime.breaker.snapshot(), at=self._now())
        except Exception as exc:
            log.warning("%s: could not record breaker state: %s", runtime.name, self._scrub(str(exc)))

    # -- the chain -----------------------------------------------------------------------------

    def chain(
        self,
        asset: AssetSpec,
        timeframe: Timeframe | str,
        *,
        prefer: str | None = None,
        only: str | None = None,
    ) -> list[tuple[str, str]]:
        """``(provider, provider symbol)`` pairs that :meth:`fetch` asks, in order.

        The enabled providers of the asset class's priority list that know the asset (its
        ``provider_symbols``) and serve ``timeframe``; ``prefer`` moves one to the front (it
        may name an enabled provider outside the class's list), ``only`` keeps just that one.

        Raises:
            NotSupported: when ``prefer``/``only`` names an unknown or disabled provider, or no
                provider is left; the message says what to add to which file.
        """
        tf = Timeframe.parse(timeframe)
        known = self._known(asset, prefer=prefer, only=only)
        served = [(n, s) for n, s in known if tf in adapter_class(n).timeframes]
        if not served:
            offers = "; ".join(
                f"{n} serves {', '.join(t.value for t in adapter_class(n).timeframes) or 'no bars'}"
                for n, _ in known
            )
            raise NotSupported(f"no provider that knows {asset.symbol} serves {tf.value} bars ({offers})")
        return served

    def _known(
        self, asset: AssetSpec, *, prefer: str | None = None, only: str | None = None
    ) -> list[tuple[str, str]]:
        """``(provider, provider symbol)`` of the enabled providers of the asset class's priority list
        (reordered or narrowed by ``prefer``/``only``) that know the asset.

        Raises:
            NotSupported: as :meth:`chain` says.
        """
        names = list(self.config.chain(asset.asset_class))
        for what, pick in (("prefer", prefer), ("only", only)):
            if pick is None:
                continue
            if not self._policy(pick).enabled:
                raise NotSupported(f"{what}={pick!r}: {pick} is disabled in providers.yaml (enabled: false)")
        if only is not None:
            names = [only]
        elif prefer is not None:
            names = [prefer, *(n for n in names if n != prefer)]
        if not names:
            raise NotSupported(
                f"no enabled provider for asset class {asset.asset_class.value}: add one under "
                f"priority.{asset.asset_class.value} in providers.yaml"
            )
        known = [(n, s) for n in names if (s := asset.symbol_at(n))]
        if not known:
            example = names[0]
            raise NotSupported(
                f"{asset.symbol} has no symbol at {', '.join(names)}: add provider_symbols: "
                f"{{{example}: <{asset.symbol}'s symbol at {example}>}} to {asset.symbol}'s entry in "
                "config/assets.yaml"
            )
        return known

    # -- fetching ------------------------------------------------------------------------------

    def fetch(
        self,
        asset: AssetSpec,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        *,
        prefer: str | None = None,
        only: str | None = None,
        verify: bool = True,
        batch_id: str | None = None,
    ) -> FetchResult:
        """Bars of ``asset`` at ``timeframe`` with ``start <= ts < end`` from the first provider of
        its chain (see :meth:`chain`) that answers, cross-verified when ``verify`` and the
        configuration's ``verification.enabled`` say so.

        The second source of the verification is the first other provider of the asset class's
        chain (whatever ``prefer``/``only`` said) that knows the asset, serves the timeframe, did
        not fail in this fetch, is let through by its breaker and returns bars at the compared
        times; it is asked for ``[first compared bar, last compared bar + one bar)``.

        Raises:
            NotSupported: when no provider of the chain knows the asset or serves the timeframe
                (the message says what to add to ``config/assets.yaml``), or ``prefer``/``only``
                names an unknown or disabled provider.
            AllProvidersFailed: when every provider failed; the message lists each one's error.
            Discrepant: when the second source disagrees and ``on_discrepancy`` is ``fail``.
        """
        tf = Timeframe.parse(timeframe)
        lo = None if start is None else utc(start)
        hi = None if end is None else utc(end)
        chain = self.chain(asset, tf, prefer=prefer, only=only)
        name, outcome, attempts = self._first_answer(
            f"{asset.symbol} {tf.value}",
            chain,
            lambda adapter, at: adapter.fetch_bars(at, tf, lo, hi),
        )
        bars = clip(outcome, lo, hi) if len(outcome) else empty_bars()
        verification = None
        if verify and self.config.verification.enabled and len(bars):
            failed = {a.provider for a in attempts}
            verification = self._verify(asset, tf, name, bars, failed, batch_id)
        return FetchResult(bars, name, attempts, verification)

    def fetch_splits(
        self,
        symbol: str,
        asset_class: AssetClass | str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        *,
        prefer: str | None = None,
        only: str | None = None,
    ) -> SplitsResult:
        """Splits of ``symbol`` with ``start <= ex_date < end`` from the first provider that answers
        among those of the ``asset_class`` priority chain that report splits and know the symbol
        (its ``provider_symbols`` in the asset registry), with the failover, breakers, rate limits,
        budgets and metering of :meth:`fetch`. An empty list is an answer (no split in the range).

        Raises:
            NotSupported: when no provider of the chain that reports splits knows ``symbol`` (the
                message says what to add to ``config/assets.yaml``), or ``prefer``/``only`` names
                an unknown or disabled provider.
            AllProvidersFailed: when every such provider failed; the message lists each one's error.
        """
        lo, hi = utc(start), utc(end)
        with self.engine.connect() as conn:
            registered = get_asset(conn, symbol)
        asset = AssetSpec(
            symbol=symbol,
            asset_class=AssetClass(asset_class),
            provider_symbols=dict(registered.provider_symbols) if registered is not None else {},
        )
        known = self._known(asset, prefer=prefer, only=only)
        chain = [(n, s) for n, s in known if provides_splits(adapter_class(n))]
        if not chain:
            reporters = [n for n in self.config.chain(asset.asset_class) if provides_splits(adapter_class(n))]
            example = reporters[0] if reporters else "yahoo"
            raise NotSupported(
                f"no provider that knows {asset.symbol} ({', '.join(n for n, _ in known)}) reports splits: "
                f"add provider_symbols: {{{example}: <{asset.symbol}'s symbol at {example}>}} to "
                f"{asset.symbol}'s entry in config/assets.yaml"
            )
        name, actions, attempts = self._first_answer(
            f"{asset.symbol} splits",
            chain,
            lambda adapter, at: fetch_splits(adapter, at, lo, hi),
        )
        ours = sorted((replace(a, symbol=asset.symbol) for a in actions), key=lambda a: a.ex_date)
        return SplitsResult([a for a in ours if lo <= a.ex_date < hi], name, attempts)

    def _first_answer(
        self, label: str, chain: list[tuple[str, str]], request: Callable[[OnlineProvider, str], T]
    ) -> tuple[str, T, list[Attempt]]:
        """``(provider, answer, attempts before it)`` of the first provider of ``chain`` whose
        ``request(adapter, provider symbol)`` succeeds (see :meth:`_call`).

        Raises:
            AllProvidersFailed: when none does; the message starts with ``label``.
        """
        attempts: list[Attempt] = []
        for name, symbol in chain:
            outcome = self._call(name, symbol, request)
            if isinstance(outcome, Attempt):
                attempts.append(outcome)
                log.info("%s: %s; trying the next provider", label, outcome)
                continue
            return name, outcome, attempts
        listed = "; ".join(str(a) for a in attempts)
        raise AllProvidersFailed(self._scrub(f"{label}: every provider failed: {listed}"), attempts)

    def _call(self, name: str, symbol: str, request: Callable[[OnlineProvider, str], T]) -> T | Attempt:
        """``request(adapter, symbol)`` of provider ``name`` behind its key check and breaker, or the
        :class:`Attempt` saying why it gave nothing. ``NotSupported`` and a spent budget leave the
        breaker alone; other errors count as failures."""
        runtime = self._runtime(name)
        if runtime.key_missing:
            missing = AuthError(
                f"{name}: no API key; set FKS_{name.upper()}_API_KEY (or name a Prefect Secret block for it "
                "in FKS_API_KEY_BLOCKS)"
            )
            return self._attempt(name, missing)
        try:
            runtime.breaker.before_call()
        except CircuitOpen as exc:
            return self._attempt(name, exc)
        try:
            answer = request(runtime.adapter, symbol)
        except (NotSupported, BudgetExceeded) as exc:
            runtime.breaker.release()
            return self._attempt(name, exc)
        except ProviderError as exc:
            self._failed(runtime, exc)
            return self._attempt(name, exc)
        except Exception as exc:  # an adapter bug must not crash the run: fail over, loudly
            log.warning(
                "%s: unexpected %s while fetching %s", name, type(exc).__name__, symbol, exc_info=False
            )
            self._failed(runtime, exc)
            return self._attempt(name, exc)
        failures_before = runtime.breaker.consecutive_failures
        state_before = runtime.breaker.state
        runtime.breaker.record_success()
        if failures_before and state_before is BreakerState.CLOSED:
            self._save_breaker(runtime)
        return answer

    def _failed(self, runtime: _Runtime, exc: BaseException) -> None:
        runtime.breaker.record_failure(self._scrub.error(exc))
        if runtime.breaker.state is BreakerState.CLOSED:  # transitions were saved by on_change
            self._save_breaker(runtime)

    def _attempt(self, name: str, exc: BaseException) -> Attempt:
        text = self._scrub(str(exc)) or type(exc).__name__
        prefix = f"{name}: "
        return Attempt(name, text.removeprefix(prefix), type(exc).__name__)

    # -- cross-verification --------------------------------------------------------------------

    def _verify(
        self,
        asset: AssetSpec,
        tf: Timeframe,
        primary: str,
        bars: pd.DataFrame,
        failed: set[str],
        batch_id: str | None,
    ) -> VerificationOutcome:
        """Cross-check ``bars`` with the other providers of the asset's chain (see :meth:`fetch`)."""
        try:
            candidates = [(n, s) for n, s in self.chain(asset, tf) if n != primary]
        except NotSupported:
            candidates = []

        def ask(name: str, symbol: str, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame | str:
            answer = self._call(name, symbol, lambda adapter, at: adapter.fetch_bars(at, tf, lo, hi))
            return f"{answer.kind}: {answer.error}" if isinstance(answer, Attempt) else answer

        verifier = CrossVerifier(self.config.verification, self.engine, now=self._now, scrub=self._scrub)
        return verifier.verify(asset, tf, primary, bars, candidates, ask, failed=failed, batch_id=batch_id)

    # -- status --------------------------------------------------------------------------------

    def status(self) -> list[ProviderStatus]:
        """Every provider of providers.yaml with its breaker, usage and budget, read from the
        database (so it shows what other processes did too)."""
        now = self._now()
        today = period_start("day", now)
        rows: list[ProviderStatus] = []
        with self.engine.connect() as conn:
            breakers = load_breakers(conn)
            usage = usage_summary(conn).set_index("provider")
            for name, policy in self.config.providers.items():
                period = policy.budget.period if policy.budget is not None else "month"
                since = period_start(period, now)
                credits = credits_used(conn, name, since)
                record = breakers.get(name)
                state, failures, opened, last_error = "closed", 0, None, None
                if record is not None:
                    state, failures, last_error = record.state, record.consecutive_failures, record.last_error
                    opened = (
                        None
                        if record.opened_at is None
                        else pd.Timestamp(record.opened_at, unit="ms", tz="UTC")
                    )
                    due = record.opened_at is not None and (
                        now.timestamp() * 1000 - record.opened_at >= policy.breaker.reset_timeout_s * 1000
                    )
                    if state == "open" and due:
                        state = "half_open"
                if name in usage.index and usage.at[name, "last_error"] is not None:
                    last_error = str(usage.at[name, "last_error"])
                budget = policy.budget.credits if policy.budget is not None else None
                rows.append(
                    ProviderStatus(
                        name=name,
                        enabled=policy.enabled,
                        state=state,
                        consecutive_failures=failures,
                        opened_at=opened,
                        calls_today=calls_used(conn, name, today),
                        period=period,
                        calls_period=calls_used(conn, name, since),
                        credits_period=credits,
                        budget=budget,
                        budget_left=None if budget is None else max(0.0, budget - credits),
                        last_error=None if last_error is None else self._scrub(last_error),
                        rate=rate_text(policy),
                    )
                )
        return rows
