"""The execution desk's only way to the models: an HTTP client of the REST service (``fks serve``).

::

    with ServiceClient.from_settings(get_settings()) as service:
        if not service.ready():
            ...                                          # models still loading: try again shortly
        answer = service.forecast({"SPX": bars})         # bars: canonical frame, index ts (UTC)
        answer["SPX"].prob_up, answer.version
        plan = service.allocate({"A": a, "B": b}, weights={"A": 0.3})
        plan.weights                                     # {"A": ..., "B": ..., "CASH": ...}

The served model is what trades: nothing here loads a model in-process. Every failure is a
:class:`ServiceError` carrying the HTTP status (None when no answer came), the service's own
``error`` message and a hint saying what to do. Only failures that are safe to repeat are retried
(the connection could not be opened, or the service answered 502/503/504), with a short
exponential backoff. The API key travels in the ``X-API-Key`` header only and is never logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
from pydantic import SecretStr

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

HEADER = "X-API-Key"
"""The header the REST service reads the API key from."""

BAR_COLUMNS = ("open", "high", "low", "close", "volume")
"""The canonical bar columns, in the order they are sent."""

RETRY_STATUSES = frozenset({502, 503, 504})
"""Answers after which a request is sent again (the service did not act on it)."""

MAX_RETRY_WAIT_S = 5.0
"""Longest wait before a retry, whatever ``Retry-After`` asks."""

RATE_LIMIT_WAITS = 120
"""How many times a request over the key's rate limit (429) waits as the service asks
(``Retry-After``) and is sent again before the 429 is raised: at the service's one-second waits,
about two minutes, time for a key allowed even one request a minute."""

KEYS_HINT = (
    "set FKS_SERVICE_API_KEY to a valid key of this service; create one with "
    "`fks keys create --name NAME` (run where the service's database is)"
)


class ServiceError(RuntimeError):
    """The REST service could not answer a request.

    Attributes:
        status: the HTTP status of the answer, or None when none came (refused, timed out).
        message: the service's own ``error`` message (or what went wrong on the way).
        hint: what to do about it.
        route: the method and path that failed, e.g. ``POST /v1/forecast``.
        retry_after: seconds the service asked to wait (429), else None.
    """

    def __init__(
        self, status: int | None, message: str, hint: str, route: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.hint = hint
        self.route = route
        self.retry_after = retry_after
        what = "no answer" if status is None else str(status)
        super().__init__(f"{route}: {what}: {message}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class SymbolForecast:
    """The forecast of one symbol's last bar.

    ``ts`` is that bar's open time (UTC); ``forecast_log_return`` is the log return expected over
    the next ``horizon`` bars; ``prob_up`` the probability that it is positive.
    """

    symbol: str
    ts: pd.Timestamp
    forecast_log_return: float
    prob_up: float
    horizon: int


@dataclass(frozen=True)
class ForecastAnswer:
    """``POST /v1/forecast``'s answer: which version answered, and one forecast per symbol."""

    model: str
    version: str
    alias: str
    request_id: str
    forecasts: dict[str, SymbolForecast]

    def __getitem__(self, symbol: str) -> SymbolForecast:
        """The forecast of ``symbol``.

        Raises:
            KeyError: the answer has no forecast for ``symbol``; the message lists those it has.
        """
        try:
            return self.forecasts[symbol]
        except KeyError:
            raise KeyError(f"no forecast for {symbol!r}; the answer has {sorted(self.forecasts)}") from None


@dataclass(frozen=True)
class Allocation:
    """``POST /v1/allocate``'s answer: target weights (fractions of the account, ``CASH`` included)
    decided at the close of bar ``ts`` by ``model`` version ``version``."""

    model: str
    version: str
    alias: str
    request_id: str
    ts: pd.Timestamp | None
    weights: dict[str, float]


class ServiceClient:
    """A synchronous client of the REST service; use it as a context manager or call :meth:`close`.

    Args:
        base_url: where the service listens, e.g. ``http://127.0.0.1:8000`` (``FKS_SERVICE_URL``).
        api_key: the key sent in ``X-API-Key`` (``FKS_SERVICE_API_KEY``); None for a service
            running with ``FKS_SERVE_AUTH=false``.
        timeout: seconds to wait for one answer.
        retries: how many times a request is sent again after a connection failure or a
            502/503/504 answer (0: never).
        backoff_s: wait before the first retry; doubled for each next one (capped at
            :data:`MAX_RETRY_WAIT_S`); a ``Retry-After`` header raises it.
        rate_limit_waits: how many times a request the service refused with 429 (the key is over
            its rate, ``FKS_SERVE_RATE_PER_MINUTE``; the service did nothing with it) waits as
            the answer's ``Retry-After`` asks (capped at :data:`MAX_RETRY_WAIT_S`) and is sent
            again, before the 429 is raised (0: never). These waits are not ``retries``: a replay
            asking the service for every bar runs at the key's rate instead of failing. The
            first wait of a client is logged as a warning, the later ones at debug level.
        transport: an httpx transport to send through (default: the network).
        sleep: how to wait (injectable, as the providers' client's).

    Raises:
        ValueError: ``base_url`` is not an http(s) URL, or ``timeout``/``retries`` are out of range.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        rate_limit_waits: int = RATE_LIMIT_WAITS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"service URL {base_url!r} must start with http:// or https:// "
                "(FKS_SERVICE_URL, e.g. http://127.0.0.1:8000)"
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if rate_limit_waits < 0:
            raise ValueError(f"rate_limit_waits must be 0 or more, got {rate_limit_waits}")
        for name in ("httpx", "httpcore"):  # their INFO/DEBUG lines would carry every URL
            logging.getLogger(name).setLevel(logging.WARNING)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.rate_limit_waits = rate_limit_waits
        self.rate_limited = 0
        """How many times this client waited for the key's rate limit (429) so far."""
        self.sleep = sleep
        headers = {"accept": "application/json", "user-agent": "fks-execution"}
        key = api_key.get_secret_value() if api_key is not None else ""
        if key:
            headers[HEADER] = key
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), headers=headers, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ServiceClient:
        """A client of ``settings.service_url`` with ``service_api_key`` and ``service_timeout_s``;
        ``kwargs`` go to the constructor (``retries``, ``transport``, ...)."""
        return cls(
            settings.service_url, settings.service_api_key, timeout=settings.service_timeout_s, **kwargs
        )

    def __repr__(self) -> str:
        return f"ServiceClient({self.base_url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- routes ------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """True once the service has loaded every model it serves (``GET /ready`` answers 200),
        False while it is still loading (503). Sent once, never retried.

        Raises:
            ServiceError: the service cannot be reached, or answered something else.
        """
        response = self._send("GET", "/ready", None, retries=0, accept=(200, 503))
        return response.status_code == 200

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: each loaded model version (name, version, alias, run_id, data_window,
        metrics, min_bars, ...), as the service describes it.

        Raises:
            ServiceError: as every route.
        """
        out = self._send("GET", "/v1/models", None).json()
        if not isinstance(out, list):
            hint = "is FKS_SERVICE_URL the FKS service?"
            raise ServiceError(200, "GET /v1/models did not answer a list", hint, "GET /v1/models")
        return out

    def forecast(
        self, symbol_bars: Mapping[str, pd.DataFrame | None], model: str = "fks-forecaster"
    ) -> ForecastAnswer:
        """Forecast the last bar of each symbol's bars with the served version of ``model``.

        Args:
            symbol_bars: symbol -> canonical bars (index ``ts``, UTC bar open times, oldest first;
                columns ``open high low close volume``; at least the model's ``min_bars``, see
                :meth:`models`), or None to let the service use the latest bars it stores.
            model: the registered model's name.

        Raises:
            ValueError: no symbol, or bars that are not canonical (the message names the symbol).
            ServiceError: the service refused or failed (422 says what is wrong with the bars).
        """
        if not symbol_bars:
            raise ValueError("forecast needs at least one symbol's bars")
        body = {"model": model, "series": _series(symbol_bars)}
        out = self._send("POST", "/v1/forecast", body).json()
        forecasts = {
            f["symbol"]: SymbolForecast(
                symbol=f["symbol"],
                ts=pd.Timestamp(f["ts"]).tz_convert("UTC"),
                forecast_log_return=float(f["forecast_log_return"]),
                prob_up=float(f["prob_up"]),
                horizon=int(f["horizon"]),
            )
            for f in out["forecasts"]
        }
        return ForecastAnswer(
            model=out["model"], version=out["version"], alias=out["alias"], request_id=out["request_id"],
            forecasts=forecasts,
        )  # fmt: skip

    def allocate(
        self,
        symbol_bars: Mapping[str, pd.DataFrame | None],
        weights: Mapping[str, float] | None = None,
        model: str = "fks-allocator",
    ) -> Allocation:
        """Target weights for the universe ``symbol_bars`` from the served allocator ``model``.

        Args:
            symbol_bars: every asset of the model's universe -> its canonical bars, or None for
                the latest bars the service stores.
            weights: the current weight of each held symbol, fractions of the account in
                [-1, 1] with an absolute sum of at most 1 (missing: 0; the rest is cash).
            model: the registered allocator's name.

        Raises:
            ValueError: no symbol, or bars that are not canonical.
            ServiceError: the service refused or failed (422 names a bad weight or universe).
        """
        if not symbol_bars:
            raise ValueError("allocate needs the bars of every asset of the universe")
        body = {
            "model": model,
            "universe": _series(symbol_bars),
            "weights": {str(s): float(w) for s, w in (weights or {}).items()},
        }
        out = self._send("POST", "/v1/allocate", body).json()
        return Allocation(
            model=out["model"],
            version=out["version"],
            alias=out["alias"],
            request_id=out["request_id"],
            ts=None if out.get("ts") is None else pd.Timestamp(out["ts"]).tz_convert("UTC"),
            weights={w["symbol"]: float(w["weight"]) for w in out["weights"]},
        )

    # -- transport ---------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        retries: int | None = None,
        accept: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        route = f"{method} {path}"
        attempts = 1 + (self.retries if retries is None else retries)
        attempt = throttled = 0
        while attempt < attempts:
            attempt += 1
            last = attempt == attempts
            try:
                response = self._http.request(method, path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = ServiceError(
                    None,
                    f"cannot connect to the service at {self.base_url} ({type(exc).__name__})",
                    "start it with `fks serve`, or set FKS_SERVICE_URL to where it listens",
                    route,
                )
                if last:
                    raise error from None
                self._wait(route, attempt, attempts, "could not connect", None)
                continue
            except httpx.TimeoutException:
                raise ServiceError(
                    None,
                    f"no answer within {self.timeout:g} s",
                    "the service is busy or stuck: check its logs, or raise FKS_SERVICE_TIMEOUT_S",
                    route,
                ) from None
            except httpx.HTTPError as exc:
                raise ServiceError(
                    None, f"{type(exc).__name__}: {exc}", "check FKS_SERVICE_URL and the network", route
                ) from None
            if response.status_code in accept:
                return response
            if response.status_code == 429 and throttled < self.rate_limit_waits:
                throttled += 1
                attempt -= 1  # refused unread, for the key's rate: not a failed attempt
                self._throttle(route, response)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                retry_after = _retry_after(response.headers.get("retry-after"))
                self._wait(route, attempt, attempts, f"answered {response.status_code}", retry_after)
                continue
            raise _error(response, route)
        raise AssertionError("unreachable")  # pragma: no cover

    def _throttle(self, route: str, response: httpx.Response) -> None:
        """Wait as a 429 answer asks (``Retry-After``, else 1 s; at most :data:`MAX_RETRY_WAIT_S`)."""
        delay = min(MAX_RETRY_WAIT_S, _retry_after(response.headers.get("retry-after")) or 1.0)
        self.rate_limited += 1
        if self.rate_limited == 1:
            log.warning(
                "%s: the service limits this API key's requests (429); waiting as it asks (%.2f s "
                "this time) and sending again: requests now go at the key's rate (raise "
                "FKS_SERVE_RATE_PER_MINUTE where the service runs to go faster)",
                route,
                delay,
            )
        else:
            log.debug("%s: over the key's rate limit again; sending again in %.2f s", route, delay)
        if delay > 0:
            self.sleep(delay)

    def _wait(self, route: str, attempt: int, attempts: int, what: str, retry_after: float | None) -> None:
        delay = min(MAX_RETRY_WAIT_S, max(self.backoff_s * 2 ** (attempt - 1), retry_after or 0.0))
        log.warning("%s: the service %s; retry %d of %d in %.2f s", route, what, attempt, attempts - 1, delay)
        if delay > 0:
            self.sleep(delay)


def _series(symbol_bars: Mapping[str, pd.DataFrame | None]) -> list[dict[str, Any]]:
    """The request's series: ``{"symbol", "bars": [{ts, open, high, low, close, volume}, ...]}``."""
    return [
        {"symbol": str(symbol)} if bars is None else {"symbol": str(symbol), "bars": _bars(str(symbol), bars)}
        for symbol, bars in symbol_bars.items()
    ]


def _bars(symbol: str, bars: pd.DataFrame) -> list[dict[str, Any]]:
    """A canonical bar frame as the service's JSON bars (``ts`` ISO 8601 UTC).

    Raises:
        ValueError: columns missing, no time index (or ``ts`` column), or values that are not
            finite numbers; the message names ``symbol``.
    """
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars of {symbol!r} must be a DataFrame, got {type(bars).__name__}")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(
            f"bars of {symbol!r} lack columns {missing}; canonical bars have {list(BAR_COLUMNS)}"
        )
    if isinstance(bars.index, pd.DatetimeIndex):
        ts = bars.index
    elif "ts" in bars.columns:
        ts = pd.DatetimeIndex(pd.to_datetime(bars["ts"], utc=True))
    else:
        raise ValueError(f"bars of {symbol!r} need a DatetimeIndex named ts (bar open times, UTC)")
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    try:
        values = bars.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"bars of {symbol!r} have values that are not numbers") from None
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"bars of {symbol!r} have a non-finite {BAR_COLUMNS[col]} at {ts[row].isoformat()}; "
            "drop or repair that bar"
        )
    stamps = [t.isoformat() for t in ts]
    return [
        {"ts": t, "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, (o, h, lo, c, v) in zip(stamps, values.tolist(), strict=True)
    ]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored)."""
    try:
        seconds = float(value) if value else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error(response: httpx.Response, route: str) -> ServiceError:
    """The :class:`ServiceError` for a non-success answer, with the service's message and a hint."""
    status = response.status_code
    try:
        data = response.json()
        found = data.get("error") or data.get("detail") if isinstance(data, dict) else None
        message = str(found if found is not None else data)
    except ValueError:
        message = response.text.strip()[:300] or response.reason_phrase
    retry_after = _retry_after(response.headers.get("retry-after"))
    if status in (401, 403):
        hint = KEYS_HINT
    elif status == 404:
        hint = "ask ServiceClient.models() (GET /v1/models) which models the service has loaded"
    elif status == 413:
        hint = "send fewer bars per series (the model's min_bars is enough) or fewer series per request"
    elif status == 422:
        hint = "fix the request as the message says"
    elif status == 429:
        wait = f"{retry_after or 1:g}"
        hint = f"this key is over its rate limit; retry in {wait} s or raise FKS_SERVE_RATE_PER_MINUTE"
    elif status == 503:
        hint = "the model is not loaded yet: wait until ServiceClient.ready() (GET /ready answers 200)"
    elif status >= 500:
        hint = "the service failed; see its logs"
    else:
        hint = "is FKS_SERVICE_URL the FKS service?"
    return ServiceError(status, message, hint, route, retry_after)
