"""Fakes shared by the provider tests and the providers benchmark: ground truth, the providers'
documented formats as :class:`tests.fixture_server.FixtureServer` routes, fake time, and builders of
adapters, configs and settings pointed at loopback servers.

A plain module (no pytest): ``benchmarks/providers.py`` imports it too. The pytest fixtures built on
it (module-scoped loopback servers, the store) live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import Engine

from config.assets import AssetClass, AssetSpec
from config.providers import ProviderPolicy, ProvidersConfig, RateLimit, RetryPolicy
from config.settings import Settings, get_settings
from market.bars import empty_bars
from providers.factory import build_adapter
from providers.http import CallRecord, Gate
from providers.online import OnlineProvider
from providers.synthetic import SyntheticMarket, simulate
from storage.provider_usage import usage_summary
from tests.fixture_server import FixtureServer, Reply, Request, Route, no_route, server_error

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"
OHLCV = ("open", "high", "low", "close", "volume")
STEP_MS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
A = TypeVar("A", bound=OnlineProvider)


# -- basics ---------------------------------------------------------------------------------------


def load_fixture(provider: str, name: str) -> Any:
    """The handwritten fixture ``tests/fixtures/providers/<provider>/<name>``, parsed."""
    return json.loads((FIXTURES / provider / name).read_text())


def ms(ts: pd.Timestamp) -> int:
    """Epoch milliseconds."""
    return int(ts.value // 1_000_000)


def opens_ms(frame: pd.DataFrame) -> np.ndarray:
    """The bar open times of ``frame`` in epoch milliseconds."""
    return np.asarray(pd.DatetimeIndex(frame.index).as_unit("ms").asi8, dtype="int64")


def fast_policy(attempts: int = 3, requests: int = 1000, **retry: Any) -> ProviderPolicy:
    """An adapter policy for tests: a generous rate, a 10 s timeout, no cache, quick retries.

    The timeout is for a request that never comes back, which no test using this policy plays
    (the timeout tests set their own): the loopback server is a thread of the test process, so a
    long garbage collection in the suite's heap can hold an answer for seconds, and a shorter
    timeout then retried it (a test counting requests saw one more)."""
    return ProviderPolicy(
        rate=RateLimit(requests=requests, per_seconds=1),
        timeout_s=10.0,
        cache_ttl_s=0.0,
        retry=RetryPolicy(attempts=attempts, base_s=0.01, max_s=0.05, jitter=0.0, **retry),
    )


def build_at(
    cls: type[A],
    url: str,
    policy: ProviderPolicy,
    *,
    sleep: Callable[[float], None] | None = None,
    gate: Gate | None = None,
    now: pd.Timestamp | None = None,
    **settings: Any,
) -> A:
    """An adapter of ``cls`` as the factory builds it, with ``FKS_<NAME>_BASE_URL=url`` and the other
    ``settings`` given (``polygon_api_key=...``); waits go to ``sleep`` (by default nowhere) and
    ``now``, if given, is the adapter's current time."""
    config = get_settings(**{f"{cls.name}_base_url": url, **settings})
    built = build_adapter(cls.name, config, policy, gate=gate, sleep=sleep or (lambda seconds: None))
    assert isinstance(built, cls)
    if now is not None:
        built.wall_clock = lambda: now.timestamp()
    return built


def answer(body: Any, status: int = 200) -> Route:
    """A route that answers every request with ``body``."""
    return lambda request: Reply(status, body)


def canonical(rows: list[tuple[str, float, float, float, float, float]]) -> pd.DataFrame:
    """A canonical bar frame from ``(utc time, open, high, low, close, volume)`` rows."""
    index = pd.DatetimeIndex([pd.Timestamp(r[0], tz="UTC") for r in rows], name="ts").as_unit("ns")
    return pd.DataFrame({c: [float(r[i + 1]) for r in rows] for i, c in enumerate(OHLCV)}, index=index)


class RecordingGate:
    """A gate that admits everything and remembers what it was asked and told."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.calls: list[CallRecord] = []

    def acquire(self, provider: str) -> None:
        """Admit the request and note it."""
        self.acquired.append(provider)

    def record(self, call: CallRecord) -> None:
        """Keep the call record."""
        self.calls.append(call)


# -- ground truth ---------------------------------------------------------------------------------


def synthetic(
    timeframe: str, end: str, origin: pd.Timestamp | str, seed: int, calendar: str = "24/7", symbol: str = "X"
) -> pd.DataFrame:
    """Ground-truth bars of ``symbol`` from the seeded synthetic market on ``calendar``."""
    start = pd.Timestamp(origin)
    start = start.tz_localize("UTC") if start.tzinfo is None else start
    market = SyntheticMarket(seed=seed, symbols=(symbol,), calendar=calendar, origin=start)
    return simulate(market, timeframe, end=end)[symbol]


def random_walk(start: pd.Timestamp, bars: int, seed: int = 7) -> pd.DataFrame:
    """``bars`` canonical one-minute bars from ``start``: a seeded random walk with valid OHLC,
    prices rounded to cents (so they survive decimal strings exactly)."""
    rng = np.random.default_rng(seed)
    close = np.round(30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, bars))), 2)
    open_ = np.round(np.concatenate([[30_000.0], close[:-1]]), 2)
    wick = np.round(np.abs(rng.normal(0.0, 5.0, (2, bars))), 2)
    index = pd.date_range(start, periods=bars, freq="1min", tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + wick[0],
            "low": np.minimum(open_, close) - wick[1],
            "close": close,
            "volume": np.round(rng.uniform(0.1, 50.0, bars), 5),
        },
        index=index,
    )


# -- Binance --------------------------------------------------------------------------------------


def kline_rows(frame: pd.DataFrame, step_ms: int) -> list[list[Any]]:
    """``frame`` as klines in Binance's documented layout (prices as exact decimal strings)."""
    rows = []
    values = frame[list(OHLCV)].to_numpy().tolist()
    for t, (o, h, low, c, v) in zip(opens_ms(frame).tolist(), values, strict=True):
        quote = c * v
        rows.append([t, repr(o), repr(h), repr(low), repr(c), repr(v), t + step_ms - 1, repr(quote), 100,
                     repr(v / 2), repr(quote / 2), "0"])  # fmt: skip
    return rows


class Klines:
    """Binance's ``GET /api/v3/klines`` over ground truth (one frame for 1m, or ``{interval: frame}``):
    rows with ``startTime <= open time <= endTime`` (ms), the first ``limit`` (<= 1000).
    ``shuffle`` answers them in reverse order, ``ignore_start`` ignores ``startTime``, and
    ``cache_bodies`` JSON-encodes each distinct answer once (for the benchmark)."""

    def __init__(
        self,
        frames: pd.DataFrame | Mapping[str, pd.DataFrame],
        symbols: tuple[str, ...] = ("BTCUSDT",),
        *,
        shuffle: bool = False,
        ignore_start: bool = False,
        cache_bodies: bool = False,
    ) -> None:
        by_interval = {"1m": frames} if isinstance(frames, pd.DataFrame) else dict(frames)
        self.series = {i: (opens_ms(f), kline_rows(f, STEP_MS[i])) for i, f in by_interval.items()}
        self.symbols = symbols
        self.shuffle = shuffle
        self.ignore_start = ignore_start
        self._encoded: dict[tuple[str, int, int], bytes] | None = {} if cache_bodies else None

    def __call__(self, request: Request) -> Reply:
        if request.path != "/api/v3/klines":
            return Reply(404, "<html><body>Not Found</body></html>")
        q = request.query
        if q.get("symbol") not in self.symbols:
            return Reply(400, load_fixture("binance", "error_invalid_symbol.json"))
        if q.get("interval") not in self.series:
            return Reply(400, {"code": -1120, "msg": "Invalid interval."})
        interval = q["interval"]
        opens, rows = self.series[interval]
        lo = 0 if self.ignore_start else int(np.searchsorted(opens, int(q.get("startTime", 0)), "left"))
        hi = int(np.searchsorted(opens, int(q.get("endTime", 2**62)), "right"))
        hi = min(hi, lo + min(int(q.get("limit", 500)), 1000))
        if self._encoded is None:
            return Reply(200, rows[lo:hi][::-1] if self.shuffle else rows[lo:hi])
        key = (interval, lo, hi)
        if key not in self._encoded:
            self._encoded[key] = json.dumps(rows[lo:hi]).encode()
        return Reply(200, self._encoded[key], headers={"Content-Type": "application/json"})


# -- Yahoo ----------------------------------------------------------------------------------------

NEW_YORK = {"gmtoffset": -14400, "timezone": "EDT", "exchangeTimezoneName": "America/New_York"}


def yahoo_day_stamps(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Yahoo's stamps of NYSE day bars: the session's opening time, 09:30 New York."""
    local = days.tz_localize(None) + pd.Timedelta(hours=9, minutes=30)
    return local.tz_localize("America/New_York").tz_convert("UTC")


# A split as the fakes serve it: (session date, new shares, old shares), e.g. ("2020-08-31", 4, 1).
Split = tuple[str, Any, Any]


def yahoo_split_seconds(splits: Sequence[Split]) -> list[int]:
    """Yahoo's ``date`` of each split: the epoch second of its session's opening time (09:30 NY)."""
    days = pd.DatetimeIndex([pd.Timestamp(day) for day, _, _ in splits])
    return [int(t) for t in yahoo_day_stamps(days).as_unit("s").asi8]


def yahoo_split_events(splits: Sequence[Split]) -> dict[str, Any]:
    """Yahoo's ``events`` of a chart holding ``splits``."""
    records = {
        str(t): {"date": t, "numerator": new, "denominator": old, "splitRatio": f"{new}:{old}"}
        for t, (_, new, old) in zip(yahoo_split_seconds(splits), splits, strict=True)
    }
    return {"splits": records}


def chart_body(
    symbol: str,
    interval: str,
    frame: pd.DataFrame,
    null_volume: bool = False,
    splits: Sequence[Split] = (),
) -> dict[str, Any]:
    """A chart response in Yahoo's documented shape for the rows of ``frame`` (stamps as served),
    with ``events.splits`` when ``splits`` are given."""
    meta = {"currency": "USD", "symbol": symbol, "exchangeName": "NMS", "instrumentType": "EQUITY",
            **NEW_YORK, "dataGranularity": interval, "range": ""}  # fmt: skip
    result: dict[str, Any] = {"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}
    if splits:
        result["events"] = yahoo_split_events(splits)
    if len(frame):
        quote = {
            c: [None if math.isnan(v) else float(v) for v in frame[c]]
            for c in ("open", "high", "low", "close")
        }
        quote["volume"] = [None] * len(frame) if null_volume else [float(v) for v in frame["volume"]]
        result["timestamp"] = [int(t) // 10**9 for t in pd.DatetimeIndex(frame.index).asi8]
        result["indicators"] = {"quote": [quote], "adjclose": [{"adjclose": quote["close"]}]}
    return {"chart": {"result": [result], "error": None}}


def chart_route(
    series: dict[tuple[str, str], pd.DataFrame],
    shuffle: bool = False,
    null_volume: bool = False,
    extra: pd.DataFrame | None = None,
    splits: Mapping[str, Sequence[Split]] | None = None,
) -> Route:
    """Yahoo's ``GET /v8/finance/chart/{symbol}`` over ``{(symbol, interval): frame with Yahoo's
    stamps}``: rows with period1 <= stamp < period2 (epoch seconds); ``extra`` rows (a live quote)
    are appended to every answer. ``splits`` (``{symbol: [(session date, numerator, denominator)]}``)
    are answered as ``events.splits`` to day charts that ask for ``events=...splits`` (a symbol with
    splits and no day frame has an empty day chart)."""
    splits = splits or {}

    def route(request: Request) -> Reply:
        prefix = "/v8/finance/chart/"
        symbol = unquote(request.path.removeprefix(prefix))
        q = request.query
        interval = q.get("interval", "")
        frame = series.get((symbol, interval))
        if frame is None and interval == "1d" and symbol in splits:
            frame = empty_bars()
        if not request.path.startswith(prefix) or frame is None:
            return Reply(404, load_fixture("yahoo", "error_not_found.json"))
        lo, hi = int(q["period1"]), int(q["period2"])
        seconds = pd.DatetimeIndex(frame.index).asi8 // 10**9
        rows = frame[(seconds >= lo) & (seconds < hi)]
        if extra is not None:
            rows = pd.concat([rows, extra])
        asked = splits.get(symbol, ()) if "splits" in q.get("events", "") and interval == "1d" else ()
        events = [s for s, t in zip(asked, yahoo_split_seconds(asked), strict=True) if lo <= t < hi]
        body = chart_body(symbol, interval, rows.iloc[::-1] if shuffle else rows, null_volume, events)
        return Reply(200, body)

    return route


def Chart(frame: pd.DataFrame, symbol: str = "BTC-USD") -> Route:  # noqa: N802 (reads as a route class)
    """Yahoo's chart API serving ``frame`` as ``symbol``'s one-minute bars."""
    return chart_route({(symbol, "1m"): frame})


# -- Polygon --------------------------------------------------------------------------------------

POLYGON = "https://api.polygon.io"
POLYGON_KEY = "pk_SECRET_7f3a9c2e"
AGGS = re.compile(r"/v2/aggs/ticker/([^/]+)/range/1/(minute|hour|day)/([^/]+)/([^/]+)")


def midnight_new_york(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Polygon's stamps of stock day aggregates: midnight New York time of the session date."""
    return days.tz_localize(None).tz_localize("America/New_York").tz_convert("UTC")


def aggregate(ts: Any, row: pd.Series) -> dict[str, Any]:
    """One aggregate in Polygon's documented shape."""
    return {"v": float(row["volume"]), "vw": float(row["close"]), "o": float(row["open"]),
            "c": float(row["close"]), "h": float(row["high"]), "l": float(row["low"]),
            "t": ms(pd.Timestamp(ts)), "n": 42}  # fmt: skip


def bound(value: str, zone: str, last: bool) -> int:
    """A from/to path segment in ms: ms as given, a date as the start (or end) of that day in ``zone``."""
    if value.isdigit():
        return int(value)
    day = pd.Timestamp(value).tz_localize(zone)
    return ms(day + pd.Timedelta(days=1)) - 1 if last else ms(day)


def aggs_route(
    series: dict[tuple[str, str], tuple[pd.DataFrame, str]],
    page_size: int = 1000,
    prefix: str = "",
    next_base: str = POLYGON,
    shuffle: bool = False,
) -> Route:
    """Polygon's aggregates v2 of ``{(ticker, span): (frame with Polygon's stamps, zone of day
    dates)}``, ``page_size`` a page; ``next_url`` on ``next_base`` (the real host by default) carries
    an opaque cursor; the key must be :data:`POLYGON_KEY`."""

    def route(request: Request) -> Reply:
        if request.query.get("apiKey") != POLYGON_KEY:
            return Reply(401, load_fixture("polygon", "error_unknown_key.json"))
        match = AGGS.fullmatch(request.path.removeprefix(prefix))
        if not request.path.startswith(prefix) or match is None:
            return Reply(404, {"status": "NOT_FOUND", "request_id": "x", "message": "Route not found"})
        ticker, span, lo, hi = unquote(match[1]), match[2], match[3], match[4]
        if (ticker, span) not in series:
            return Reply(200, load_fixture("polygon", "aggs_no_results.json") | {"ticker": ticker})
        frame, zone = series[(ticker, span)]
        stamps = pd.DatetimeIndex(frame.index).asi8 // 1_000_000
        rows = frame[(stamps >= bound(lo, zone, False)) & (stamps <= bound(hi, zone, True))]
        cursor = request.query.get("cursor")
        offset = int(base64.urlsafe_b64decode(cursor).decode().split("=")[1]) if cursor else 0
        page = rows.iloc[offset : offset + page_size]
        results = [aggregate(ts, row) for ts, row in page.iterrows()]
        body: dict[str, Any] = {"ticker": ticker, "queryCount": len(results), "resultsCount": len(results),
                                "adjusted": True, "results": results[::-1] if shuffle else results,
                                "status": "OK", "request_id": "r", "count": len(results)}  # fmt: skip
        if offset + page_size < len(rows):
            token = base64.urlsafe_b64encode(f"offset={offset + page_size}".encode()).decode()
            body["next_url"] = (
                f"{next_base}/v2/aggs/ticker/{match[1]}/range/1/{span}/{lo}/{hi}?cursor={token}"
            )
        return Reply(200, body)

    return route


def split_record(ticker: str, split: Split) -> dict[str, Any]:
    """One split in Polygon's reference v3 shape (``split_to`` new shares for ``split_from`` old)."""
    day, new, old = split
    return {"execution_date": day, "split_from": old, "split_to": new, "ticker": ticker,
            "id": f"E{ticker}{day.replace('-', '')}"}  # fmt: skip


def splits_route(
    splits: Mapping[str, Sequence[Split]],
    page_size: int = 2,
    next_base: str = POLYGON,
    other: Route = no_route,
) -> Route:
    """Polygon's ``GET /v3/reference/splits`` over ``{ticker: [(execution date, split_to,
    split_from)]}``: the ticker's splits with ``execution_date.gte <= date <= execution_date.lte``,
    ``page_size`` a page, then ``next_url`` on ``next_base`` with an opaque cursor holding the query.
    The key must be :data:`POLYGON_KEY`; other paths go to ``other`` (e.g. :func:`aggs_route`)."""

    def route(request: Request) -> Reply:
        if request.path != "/v3/reference/splits":
            return other(request)
        if request.query.get("apiKey") != POLYGON_KEY:
            return Reply(401, load_fixture("polygon", "error_unknown_key.json"))
        cursor = request.query.get("cursor")
        q = json.loads(base64.urlsafe_b64decode(cursor)) if cursor else {**request.query, "offset": 0}
        ticker, lo, hi = (q.get(k, "") for k in ("ticker", "execution_date.gte", "execution_date.lte"))
        rows = [split_record(ticker, s) for s in splits.get(ticker, ()) if lo <= s[0] <= hi]
        offset = int(q["offset"])
        page = rows[offset : offset + page_size]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": "r"}
        if offset + page_size < len(rows):
            following = {k: v for k, v in q.items() if k != "apiKey"} | {"offset": offset + page_size}
            token = base64.urlsafe_b64encode(json.dumps(following).encode()).decode()
            body["next_url"] = f"{next_base}/v3/reference/splits?cursor={token}"
        return Reply(200, body)

    return route


# -- the manager: faults, fake time, configs, loopback servers ------------------------------------

BTC = AssetSpec(
    symbol="BTC-USD",
    asset_class=AssetClass.CRYPTO,
    timeframe="1m",
    default_source="auto",
    provider_symbols={"binance": "BTCUSDT", "yahoo": "BTC-USD", "polygon": "X:BTCUSD"},
)


def origin(days_back: int = 20) -> pd.Timestamp:
    """A recent UTC midnight: the adapters only return closed bars, and Yahoo keeps 1m bars 30 days."""
    return pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=days_back)


class Faulty:
    """A route that serves ``schedule[n]`` to the n-th request (0-based) and ``healthy`` otherwise;
    ``down`` makes every request a 503. Counts what it served."""

    def __init__(self, healthy: Route, schedule: dict[int, Reply] | None = None, down: bool = False) -> None:
        self.healthy = healthy
        self.schedule = dict(schedule or {})
        self.down = down
        self.served: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            n = len(self.served)
            fault = server_error(503) if self.down else self.schedule.get(n)
            reply = fault or self.healthy(request)
            self.served.append(reply.status)
        return reply


@dataclass
class FakeTime:
    """Monotonic and wall clocks that move only when ``sleep`` is called (sleeps are recorded)."""

    mono: float = 1_000.0
    wall0: float = field(default_factory=lambda: float(int(time.time())))
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall0 + (self.mono - 1_000.0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += max(0.0, seconds)

    def manager_kwargs(self, config: ProvidersConfig) -> dict[str, Any]:
        """``ProviderManager`` keyword arguments: ``config`` and these clocks."""
        return {"config": config, "sleep": self.sleep, "clock": self.clock, "wall_clock": self.wall}


def policy(**overrides: Any) -> dict[str, Any]:
    """A provider policy for tests: fast, uncached, two attempts per request, a patient breaker, and
    a patient timeout (as :func:`fast_policy`'s: a busy machine can hold a loopback answer past a
    short one, and the retry adds a request a test counts; a test of timeouts sets its own)."""
    base: dict[str, Any] = {
        "rate": {"requests": 1000, "per_seconds": 1, "burst": 1000},
        "timeout_s": 10.0,
        "cache_ttl_s": 0,
        "retry": {"attempts": 2, "base_s": 0.01, "max_s": 0.05, "jitter": 0.0},
        "breaker": {"failure_threshold": 100, "reset_timeout_s": 30},
    }
    base.update(overrides)
    return base


def fragile(threshold: int, reset_s: float) -> dict[str, Any]:
    """A :func:`policy` without retries whose breaker opens after ``threshold`` failures in a row."""
    return policy(retry={"attempts": 1}, breaker={"failure_threshold": threshold, "reset_timeout_s": reset_s})


def make_config(
    crypto: tuple[str, ...] = ("binance", "yahoo"),
    verification: dict[str, Any] | None = None,
    **providers: dict[str, Any],
) -> ProvidersConfig:
    """Providers config for tests: binance, yahoo and polygon with :func:`policy`, overridable."""
    entries = {name: policy() for name in ("binance", "yahoo", "polygon", "coingecko", "alphavantage")}
    entries.update(providers)
    return ProvidersConfig.model_validate(
        {
            "priority": {"crypto": list(crypto), "equity": ["yahoo", "polygon", "alphavantage"]},
            "providers": entries,
            "verification": {"enabled": True, "bars": 5, "tolerance": 0.005, **(verification or {})},
        }
    )


def write_config(config: ProvidersConfig, path: Path) -> Path:
    """``config`` as a providers.yaml at ``path``."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


def settings_for(base: Settings, tmp_path: Path, config: ProvidersConfig, **servers: str) -> Settings:
    """Settings on ``base``'s database with each provider's base URL pointed at its server."""
    urls = {f"{name}_base_url": url for name, url in servers.items()}
    return get_settings(
        data_dir=base.data_dir,
        db_url=base.db_url,
        providers_file=write_config(config, tmp_path / "providers.yaml"),
        **urls,
    )


def usage(engine: Engine) -> dict[str, dict[str, Any]]:
    """``usage_summary`` by provider."""
    with engine.connect() as conn:
        frame = usage_summary(conn)
    return {str(r["provider"]): {str(k): v for k, v in r.items()} for r in frame.to_dict("records")}


def assert_same_bars(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Bit-for-bit the expected canonical bars, with no duplicate timestamp."""
    assert not got.index.has_duplicates
    assert got.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def run_in_threads(target: Callable[..., Any], count: int, timeout: float | None = None) -> None:
    """Run ``target(i)`` for ``i`` in ``range(count)`` in as many threads at once; wait for them."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


class Loopback:
    """Loopback servers shared by a module's tests (starting and stopping one costs ~0.5 s):
    ``play(binance=route, ...)`` resets them and plays the given routes."""

    NAMES = ("binance", "yahoo", "polygon", "dead")

    def __init__(self, servers: dict[str, FixtureServer]) -> None:
        self.servers = servers

    @contextlib.contextmanager
    def play(self, **routes: Route) -> Iterator[tuple[FixtureServer, ...]]:
        """The servers named in ``routes`` (in that order), fresh and playing those routes."""
        for name, server in self.servers.items():
            server.reset(routes.get(name, no_route))
        yield tuple(self.servers[name] for name in routes)
