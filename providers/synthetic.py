"""A seeded market simulator, and the ``synthetic`` provider that serves its bars.

The simulator draws any number of correlated assets at ``1m``, ``1h`` or ``1d`` on a trading
calendar (``24/7``, ``24/5`` or an exchange such as ``XNYS``), with a market-wide calm/stressed
regime, Poisson jumps, OHLC wicks and an intraday U-shaped volume profile. It is offline, fast
(vectorised numpy) and reproducible bit for bit.

Quick start::

    import pandas as pd
    from providers.synthetic import SyntheticMarket, SyntheticProvider, simulate

    market = SyntheticMarket(seed=7, symbols=("BTC", "ETH"), origin="2024-01-01")
    frames = simulate(market, "1h", end="2024-03-01")          # {"BTC": bars, "ETH": bars}
    provider = SyntheticProvider(market)
    bars = provider.fetch_bars("ETH", "1m", start=None, end=pd.Timestamp("2024-01-02", tz="UTC"))

Parameters (fields of :class:`SyntheticMarket`)
-----------------------------------------------

``k`` is the number of symbols. *Per asset* fields take one number for every asset or a tuple of
``k`` numbers in the order of ``symbols``. A *day* is one session of the calendar (a trading day:
a UTC day for ``24/7``, a 17:00-17:00 New York day for ``24/5``, an exchange's regular session
otherwise).

``seed`` -- int >= 0, default ``0``
    The only source of randomness.
``symbols`` -- tuple of distinct names, default ``("SYNA", "SYNB")``
    An asset's path is keyed by its name, not its position: ``("A", "B")`` and ``("B", "A")``
    give each name the same bars, ``("C", "D")`` other bars. The order is only the order of the
    per-asset tuples and of the result.
``calendar`` -- str, default ``"24/7"``
    Any name :func:`market.calendars.get_calendar` knows: ``24/7``, ``24/5``, ``XNYS``, ...
    Exchange calendars know sessions only up to about a year ahead, so their bars stop there.
``origin`` -- UTC timestamp, default ``2020-01-01 00:00 UTC``
    Start of the simulated history: the first bar is the first grid point at or after it.
    Naive input is read as UTC. Exchange calendars have no sessions before 1990.
``correlation`` -- float or k x k matrix, default ``0.3``
    A constant pairwise correlation rho of the diffusive shocks, in ``(-1/(k-1), 1)`` (``(-1, 1)``
    for one asset: its loading on the market factor), or an explicit symmetric, unit-diagonal,
    positive-definite matrix (nested tuples, lists or ndarray; row and column ``j`` belong to
    ``symbols[j]``).
``drift`` -- per asset, 1/year, default ``0.05``
    mu: the annual expected growth rate of the price, ``E[S_t] = S_0 exp(mu t)`` (t in years)
    within a regime; in [-2, 2].
``vol_calm``, ``vol_stressed`` -- per asset, annualised, defaults ``0.15`` and ``0.45``
    sigma of the log-price in the calm and the stressed regime (0.15 = 15 % a year); in
    (0, 5]. Equal values give a market without volatility regimes.
``calm_days``, ``stressed_days`` -- days, defaults ``60`` and ``15``
    Expected length of a calm and of a stressed spell.
``jump_intensity`` -- 1/year, default ``4``
    lambda: expected number of jumps per asset per year; ``0`` turns jumps off.
``jump_mean``, ``jump_std`` -- log-return, defaults ``-0.01`` and ``0.01``
    m and s: mean and standard deviation of one jump's log-return. A jump lands within one bar
    at every timeframe, so the defaults are sized as intraday news jumps: a move beyond 5 % (4 s
    from m) inside one minute would halt a US stock (the Limit Up-Limit Down band of large
    caps), and it is where ``config/validation.yaml`` flags an equity's 1m return
    (``return_in_bound``, floor 0.05). Fatter daily tails come from the regimes (excess kurtosis
    about 4.5 of daily returns at the defaults); larger jumps are a parameter away.
``start_prices`` -- per asset, price units, default ``None``
    First open of each asset. ``None`` draws each from the seed, log-uniform on [10, 1000] and
    rounded to cents (see :meth:`SyntheticMarket.initial_prices`).
``base_volume`` -- per asset, units of the asset per session, default ``1e6``
    V: expected volume of one calm session (shares, coins, ...), at every timeframe.
``volume_profile`` -- in [0, 1), default ``0.5``
    a: strength of the intraday U shape of volume; 0 is flat; the ends of a session trade
    ``(1 + 2a) / (1 - a)`` times its middle (4x by default).
``stressed_volume_multiplier`` -- default ``2.0``
    M: factor on volume in the stressed regime.
``volume_shock`` -- >= 0, default ``1.0``
    c: sensitivity of volume to the absolute size of the bar's shock.
``volume_noise`` -- >= 0, default ``0.3``
    eta: standard deviation of the log-normal noise of volume.
``wick_scale`` -- >= 0, default ``0.5``
    w: size of the high/low wicks in units of the bar's diffusive standard deviation.

Model
-----

Bars are indexed ``t = 0, 1, 2, ...`` by their position on the calendar's bar grid
(:meth:`market.calendars.Calendar.bar_grid`) counted from ``origin``. Per timeframe,
``dt = 1 / bars_per_year`` (``Calendar.bars_per_year``; e.g. 525 600 for ``24/7`` minutes,
98 280 for ``XNYS`` minutes) and ``B = bars_per_year / sessions_per_year`` bars per session.
Every bar gets the nominal ``dt`` and ``1/B`` of a session's volume, including the short last
bar of a session (``XNYS`` hour bars, early closes). Time does not pass between sessions:
weekends and nights carry no extra variance.

1. **Regime.** A market-wide two-state Markov chain ``s_t`` (0 calm, 1 stressed) in bar time.
   Spells alternate; their lengths in bars are geometric with means ``calm_days * B`` and
   ``stressed_days * B`` (at least one bar). The first state is drawn from the stationary law,
   ``P(s_0 = 1) = stressed_days / (calm_days + stressed_days)``. Spell lengths are drawn by
   inversion, ``1 + floor(log U / log(1 - p))`` with ``p = 1 / mean``.
2. **Shocks.** A market factor ``f_t ~ N(0, 1)`` drawn from the seed alone and one
   idiosyncratic ``z_{t,j} ~ N(0, 1)`` per asset drawn from the seed and the asset's *name*, all
   independent. A constant ``rho >= 0`` is a one-factor model,
   ``eps_{t,j} = sqrt(rho) f_t + sqrt(1 - rho) z_{t,j}``, so ``corr(eps_i, eps_j) = rho`` and an
   asset's path depends only on ``(seed, name, rho)`` and its own parameters: the same in any
   universe, alone or with others, in any order. A negative constant or a matrix uses
   ``eps_t = L z_t`` with ``L`` the lower Cholesky factor of the correlation matrix with the
   assets sorted by name: the order the symbols are given in does not matter, the first name
   in sorted order has the shocks it has alone, and adding a name that sorts after the others
   leaves their paths unchanged (see :meth:`SyntheticMarket.shock_loadings`).
3. **Jumps.** ``N_{t,j} ~ Poisson(lambda dt)`` independent per asset; the bar's jump is
   ``J_{t,j} = m N + s sqrt(N) xi`` with ``xi ~ N(0, 1)`` (a sum of ``N`` normal jumps).
   ``kappa = exp(m + s^2/2) - 1`` compensates the drift.
4. **Log-returns.** with ``sigma_{t,j}`` the asset's volatility in regime ``s_t``::

       r_{t,j} = (mu_j - sigma_{t,j}^2 / 2 - lambda kappa) dt + sigma_{t,j} sqrt(dt) eps_{t,j} + J_{t,j}

5. **Prices.** ``close_t = S_0 exp(r_0 + ... + r_t)``; ``open_0 = S_0``, ``open_t = close_{t-1}``;
   ``high_t = max(open_t, close_t) exp(w sigma sqrt(dt) |h|)``,
   ``low_t = min(open_t, close_t) exp(-w sigma sqrt(dt) |l|)`` with ``h, l ~ N(0, 1)``, so
   ``0 < low <= min(open, close) <= max(open, close) <= high`` on every bar.
6. **Volume.** ``V_j / B * P(x_t) * M^{s_t} * (1 + c |eps_{t,j}|) / (1 + c sqrt(2/pi))
   * exp(eta zeta - eta^2 / 2)`` with ``zeta ~ N(0, 1)``. ``x_t`` in ``[0, 1]`` is the position of
   the bar's midpoint within its session and ``P(x) = 1 + a (3 (2x - 1)^2 - 1)`` (mean 1 over a
   session) for intraday timeframes; ``P = 1`` for ``1d``. So a calm session trades ``V_j`` in
   expectation at every timeframe, and volume rises with the size of the move.

Reproducibility and prefix stability
------------------------------------

The bars are a pure function of ``(market, timeframe)`` and each bar's position from
``origin``: simulating to a later ``end`` returns exactly the same earlier bars (bit for bit),
so an ingestion that resumes from a watermark gets the same bars again, and the bars of any
``[start, end)`` equal that slice of one longer run. Each random quantity has its own stream,
``SeedSequence(seed, spawn_key=(stream, timeframe, name_key(symbol), chunk))`` for an asset's
streams (``name_key``: a stable 64-bit BLAKE2b hash of the name, never Python's ``hash``) and
``SeedSequence(seed, spawn_key=(stream, timeframe, chunk))`` for the market-wide regime and
factor, drawn in fixed chunks of 65 536 bars (regime spells: 64 spells) that are always drawn
whole. Timeframes are simulated independently: ``1h`` bars are not the aggregate of the ``1m``
bars. Because streams are separate, changing the jump parameters leaves the diffusive shocks,
wicks and volume noise unchanged. Results are reproducible for a given numpy version; numpy does
not promise the same streams across versions.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import Annotated, Any, Final, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from market.bars import BAR_COLUMNS, Timeframe, as_utc, empty_bars
from market.calendars import Calendar, get_calendar
from providers.base import NotSupported

__all__ = [
    "MAX_BARS",
    "EndRequiredError",
    "SyntheticMarket",
    "SyntheticProvider",
    "name_key",
    "simulate",
    "simulate_regimes",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MAX_BARS: Final[int] = 10_000_000
"""Most bars one call to :func:`simulate` produces per symbol (about 19 years of 24/7 minutes)."""

_CHUNK: Final[int] = 1 << 16
_RUN_CHUNK: Final[int] = 64
_TIMEFRAME_KEY: Final[dict[Timeframe, int]] = {Timeframe.M1: 1, Timeframe.H1: 2, Timeframe.D1: 3}


class _Stream(IntEnum):
    REGIME_START = 1
    REGIME_SPELLS = 2
    SHOCKS = 3
    JUMPS = 4
    WICK_HIGH = 5
    WICK_LOW = 6
    VOLUME_NOISE = 7
    START_PRICE = 8
    MARKET_FACTOR = 9


def _utc(value: Any) -> pd.Timestamp:
    return as_utc(value, "timestamp").as_unit("ns")


UtcTimestamp = Annotated[
    pd.Timestamp,
    BeforeValidator(_utc),
    PlainSerializer(lambda ts: ts.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
PerAsset = float | tuple[float, ...]
Matrix = tuple[tuple[float, ...], ...]


def _matrix_input(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (
            tuple(tuple(float(x) for x in row) for row in np.atleast_2d(value))
            if value.ndim
            else float(value)
        )
    return value


class SyntheticMarket(BaseModel):
    """Configuration of a simulated market: every parameter, its unit and default is in the module docstring.

    Frozen and hashable. Per-asset fields take one number or a tuple with one number per symbol.

    Raises:
        pydantic.ValidationError (a ``ValueError``): for an out-of-range field, a per-asset tuple
            of the wrong length, duplicate symbols, an unknown calendar, or a correlation that is
            not a valid (positive-definite) correlation matrix; the message says how to fix it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    seed: int = Field(default=0, ge=0)
    symbols: tuple[str, ...] = ("SYNA", "SYNB")
    calendar: str = "24/7"
    origin: UtcTimestamp = pd.Timestamp("2020-01-01", tz="UTC")
    correlation: Annotated[float | Matrix, BeforeValidator(_matrix_input)] = 0.3
    drift: PerAsset = 0.05
    vol_calm: PerAsset = 0.15
    vol_stressed: PerAsset = 0.45
    calm_days: float = Field(default=60.0, gt=0, le=36_500)
    stressed_days: float = Field(default=15.0, gt=0, le=36_500)
    jump_intensity: float = Field(default=4.0, ge=0, le=10_000)
    jump_mean: float = Field(default=-0.01, ge=-1.0, le=1.0)
    jump_std: float = Field(default=0.01, ge=0, le=1.0)
    start_prices: tuple[float, ...] | None = None
    base_volume: PerAsset = 1e6
    volume_profile: float = Field(default=0.5, ge=0, lt=1)
    stressed_volume_multiplier: float = Field(default=2.0, gt=0, le=100)
    volume_shock: float = Field(default=1.0, ge=0, le=100)
    volume_noise: float = Field(default=0.3, ge=0, le=3)
    wick_scale: float = Field(default=0.5, ge=0, le=10)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(s.strip() for s in symbols)
        if not cleaned or any(not s for s in cleaned):
            raise ValueError("symbols must be a non-empty tuple of non-empty names, e.g. ('BTC', 'ETH')")
        if len(set(cleaned)) != len(cleaned):
            dups = sorted({s for s in cleaned if cleaned.count(s) > 1})
            raise ValueError(f"symbols repeat: {', '.join(dups)}; give each asset once")
        return cleaned

    @field_validator("calendar")
    @classmethod
    def _check_calendar(cls, name: str) -> str:
        return get_calendar(name).name

    @model_validator(mode="after")
    def _check_assets(self) -> Self:
        k = len(self.symbols)
        bounds = {
            "drift": (-2.0, 2.0),
            "vol_calm": (1e-6, 5.0),
            "vol_stressed": (1e-6, 5.0),
            "base_volume": (1e-9, 1e15),
        }
        for name, (lo, hi) in bounds.items():
            values = np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            if values.size not in (1, k):
                raise ValueError(f"{name} has {values.size} values for {k} symbols; give one number or {k}")
            if not np.all((values >= lo) & (values <= hi)):
                raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {getattr(self, name)}")
        if self.start_prices is not None:
            prices = np.asarray(self.start_prices, dtype=np.float64)
            if prices.size != k:
                raise ValueError(f"start_prices has {prices.size} values for {k} symbols; give {k} or None")
            if not np.all(np.isfinite(prices) & (prices > 0)):
                raise ValueError(f"start_prices must be positive and finite, got {self.start_prices}")
        self.correlation_matrix()
        return self

    def correlation_matrix(self) -> FloatArray:
        """The ``k x k`` correlation matrix of the diffusive shocks.

        Raises:
            ValueError: when it is not symmetric with unit diagonal and entries in [-1, 1], or not
                positive definite (for a constant rho: outside ``(-1/(k-1), 1)``).
        """
        k = len(self.symbols)
        if isinstance(self.correlation, float | int):
            rho = float(self.correlation)
            lowest = -1.0 / (k - 1) if k > 1 else -1.0
            if not (lowest < rho < 1.0):
                raise ValueError(
                    f"correlation {rho} is not valid for {k} assets: a constant correlation must lie in "
                    f"({lowest:.4g}, 1) to be positive definite"
                )
            corr = np.full((k, k), rho)
            np.fill_diagonal(corr, 1.0)
            return corr
        corr = np.asarray(self.correlation, dtype=np.float64)
        if corr.shape != (k, k):
            raise ValueError(
                f"correlation matrix has shape {corr.shape}; give a {k} x {k} matrix (row per symbol)"
            )
        if not np.all(np.isfinite(corr)) or not np.allclose(corr, corr.T, rtol=0, atol=1e-12):
            raise ValueError("correlation matrix must be finite and symmetric")
        if not np.all(np.diag(corr) == 1.0) or np.any(np.abs(corr) > 1.0):
            raise ValueError("correlation matrix needs ones on the diagonal and entries in [-1, 1]")
        try:
            np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            low = float(np.linalg.eigvalsh(corr).min())
            raise ValueError(
                f"correlation matrix is not positive definite (smallest eigenvalue {low:.3g}); "
                "shrink the off-diagonal entries toward 0"
            ) from None
        return corr

    def initial_prices(self) -> FloatArray:
        """First open of each asset, in price units: ``start_prices`` or drawn from the seed and
        the asset's name (so a name keeps its price whatever the other symbols are)."""
        if self.start_prices is not None:
            return np.asarray(self.start_prices, dtype=np.float64)
        out = np.empty(len(self.symbols))
        for j, symbol in enumerate(self.symbols):
            u = _rng(self.seed, _Stream.START_PRICE, name_key(symbol)).random()
            out[j] = round(10.0 ** (1.0 + 2.0 * u), 2)
        return out

    def shock_loadings(self) -> tuple[FloatArray, FloatArray]:
        """How the diffusive shocks are built: ``(a, B)`` with ``eps_j = a_j f + sum_i B[j, i] z_i``.

        ``f`` is the market factor (drawn from the seed alone) and ``z_i`` the idiosyncratic shock
        of symbol ``i`` (drawn from the seed and the symbol's name); ``a`` has ``k`` entries and
        ``B`` is ``k x k``, both in the order of ``symbols``. A constant ``correlation`` ``rho >= 0``
        is a one-factor model, ``a_j = sqrt(rho)``, ``B = sqrt(1 - rho) I``: a symbol's shocks
        depend only on the seed, its name and ``rho``, whatever the other symbols. Otherwise (a
        negative constant or a matrix) ``a = 0`` and ``B`` is the lower Cholesky factor of the
        correlation matrix with the symbols sorted by name, so the order they are given in does
        not matter (see Model, step 2).
        """
        k = len(self.symbols)
        if isinstance(self.correlation, float | int) and float(self.correlation) >= 0.0:
            rho = float(self.correlation)
            return np.full(k, math.sqrt(rho)), math.sqrt(1.0 - rho) * np.eye(k)
        corr = self.correlation_matrix()
        order = sorted(range(k), key=lambda j: self.symbols[j])
        chol = np.linalg.cholesky(corr[np.ix_(order, order)])
        loadings = np.zeros((k, k))
        loadings[np.ix_(order, order)] = chol
        return np.zeros(k), loadings

    def _per_asset(self, name: str) -> FloatArray:
        values = np.asarray(getattr(self, name), dtype=np.float64)
        return np.broadcast_to(values, (len(self.symbols),)).astype(np.float64)


def name_key(symbol: str) -> int:
    """A stable 64-bit key of a symbol's name (BLAKE2b of its UTF-8 bytes; not Python's ``hash``,
    which changes between processes): the random streams of an asset are keyed by it."""
    return int.from_bytes(hashlib.blake2b(symbol.encode("utf-8"), digest_size=8).digest(), "big")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))
    )


def _chunked(
    seed: int, key: tuple[int, ...], n: int, draw: Callable[[np.random.Generator, int], FloatArray]
) -> FloatArray:
    """Concatenate whole chunks ``draw(rng_c, _CHUNK)``, ``rng_c`` keyed by ``key + (c,)``, cut to ``n``."""
    out = np.empty(n, dtype=np.float64)
    for c in range(-(-n // _CHUNK)):
        lo, hi = c * _CHUNK, min(n, (c + 1) * _CHUNK)
        out[lo:hi] = draw(_rng(seed, *key, c), _CHUNK)[: hi - lo]
    return out


def _normals(rng: np.random.Generator, size: int) -> FloatArray:
    return rng.standard_normal(size)


def _regime_path(seed: int, tf_key: int, n: int, calm_bars: float, stressed_bars: float) -> BoolArray:
    """Stressed flag of the first ``n`` bars: alternating spells with geometric lengths."""
    if n <= 0:
        return np.zeros(0, dtype=np.bool_)
    p = np.array([1.0 / max(calm_bars, 1.0), 1.0 / max(stressed_bars, 1.0)])
    stationary_stressed = stressed_bars / (calm_bars + stressed_bars)
    first = int(_rng(seed, _Stream.REGIME_START, tf_key).random() < stationary_stressed)
    lengths: list[npt.NDArray[np.int64]] = []
    covered, c = 0, 0
    while covered < n:
        u = 1.0 - _rng(seed, _Stream.REGIME_SPELLS, tf_key, c).random(_RUN_CHUNK)  # in (0, 1]
        state = (first + c * _RUN_CHUNK + np.arange(_RUN_CHUNK)) % 2
        pj = p[state]
        certain = pj >= 1.0  # a mean of one bar or less: every spell lasts exactly one bar
        spell = 1.0 + np.floor(np.log(u) / np.log1p(-np.where(certain, 0.5, pj)))
        spell[certain] = 1.0
        block = np.minimum(spell, float(n)).astype(np.int64)
        lengths.append(block)
        covered += int(block.sum())
        c += 1
    ends = np.minimum(np.cumsum(np.concatenate(lengths)), n)
    counts = np.diff(ends, prepend=0)
    states = (first + np.arange(counts.size)) % 2 == 1
    return np.repeat(states, counts)


def _jumps(lam_dt: float, mean: float, std: float) -> Callable[[np.random.Generator, int], FloatArray]:
    def draw(rng: np.random.Generator, size: int) -> FloatArray:
        counts = rng.poisson(lam_dt, size)
        out = np.zeros(size)
        hit = np.flatnonzero(counts)
        if hit.size:
            nj = counts[hit].astype(np.float64)
            out[hit] = mean * nj + std * np.sqrt(nj) * rng.standard_normal(hit.size)
        return out

    return draw


def _session_profile(
    calendar: Calendar, grid: pd.DatetimeIndex, tf: Timeframe, strength: float
) -> FloatArray:
    """``P(x)`` of each intraday bar, ``x`` the bar midpoint's position within its session."""
    ts = grid.asi8
    sessions = calendar.sessions(grid[0] - pd.Timedelta(days=2), grid[-1] + pd.Timedelta(days=2))
    opens = sessions["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    closes = sessions["close"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    idx = np.clip(np.searchsorted(opens, ts, side="right") - 1, 0, None)
    o, c = opens[idx], closes[idx]
    mid = ts + np.minimum(tf.delta.value, c - ts) // 2
    x = np.clip((mid - o) / np.maximum(c - o, 1), 0.0, 1.0)
    return 1.0 + strength * (3.0 * (2.0 * x - 1.0) ** 2 - 1.0)


def _simulate_arrays(
    market: SyntheticMarket,
    tf: Timeframe,
    n: int,
    dt: float,
    bars_per_session: float,
    profile: FloatArray | None,
) -> tuple[FloatArray, BoolArray]:
    """The kernel: bars of every asset as a ``(k, 5, n)`` array (open, high, low, close, volume)."""
    seed, tf_key, k = market.seed, _TIMEFRAME_KEY[tf], len(market.symbols)
    stressed = _regime_path(
        seed, tf_key, n, market.calm_days * bars_per_session, market.stressed_days * bars_per_session
    )
    factor_loading, loadings = market.shock_loadings()
    names = [name_key(symbol) for symbol in market.symbols]
    by_name = sorted(range(k), key=lambda i: market.symbols[i])
    mu, vol_calm, vol_stressed = (
        market._per_asset("drift"),
        market._per_asset("vol_calm"),
        market._per_asset("vol_stressed"),
    )
    volume_base = market._per_asset("base_volume") / bars_per_session
    prices0 = market.initial_prices()
    lam, m, s = market.jump_intensity, market.jump_mean, market.jump_std
    compensator = lam * math.expm1(m + 0.5 * s * s)
    c, eta = market.volume_shock, market.volume_noise
    volume_level = np.where(stressed, market.stressed_volume_multiplier, 1.0) / (
        1.0 + c * math.sqrt(2.0 / math.pi)
    )
    if profile is not None:
        volume_level = volume_level * profile

    out = np.empty((k, 5, n), dtype=np.float64)
    shocks: dict[int, FloatArray] = {}
    uses = np.count_nonzero(loadings, axis=0)  # rows that still need symbol i's shocks

    def shock(i: int) -> FloatArray:
        z = shocks.get(i)
        if z is None:
            z = _chunked(seed, (_Stream.SHOCKS, tf_key, names[i]), n, _normals)
        uses[i] -= 1
        if uses[i] > 0:
            shocks[i] = z
        else:
            shocks.pop(i, None)
        return z

    factor = _chunked(seed, (_Stream.MARKET_FACTOR, tf_key), n, _normals) if np.any(factor_loading) else None
    sqrt_dt = math.sqrt(dt)
    for j in range(k):
        eps = np.zeros(n) if factor is None else factor_loading[j] * factor
        for i in by_name:  # summed in name order: bit for bit the same whatever the order given
            if loadings[j, i] != 0.0:
                eps += loadings[j, i] * shock(i)
        sig_calm, sig_stressed = vol_calm[j] * sqrt_dt, vol_stressed[j] * sqrt_dt
        bar_sigma = np.where(stressed, sig_stressed, sig_calm)
        drift_calm = (mu[j] - 0.5 * vol_calm[j] ** 2 - compensator) * dt
        drift_stressed = (mu[j] - 0.5 * vol_stressed[j] ** 2 - compensator) * dt
        r = np.where(stressed, drift_stressed, drift_calm) + bar_sigma * eps
        if lam > 0:
            r += _chunked(seed, (_Stream.JUMPS, tf_key, names[j]), n, _jumps(lam * dt, m, s))
        bars = out[j]
        close = bars[3]
        np.cumsum(r, out=close)
        np.exp(close, out=close)
        close *= prices0[j]
        bars[0, 0] = prices0[j]
        bars[0, 1:] = close[:-1]
        wick = market.wick_scale * bar_sigma
        high = np.abs(_chunked(seed, (_Stream.WICK_HIGH, tf_key, names[j]), n, _normals))
        high *= wick
        np.exp(high, out=high)
        bars[1] = np.maximum(bars[0], close) * high
        low = np.abs(_chunked(seed, (_Stream.WICK_LOW, tf_key, names[j]), n, _normals))
        low *= -wick
        np.exp(low, out=low)
        bars[2] = np.minimum(bars[0], close) * low
        noise = _chunked(seed, (_Stream.VOLUME_NOISE, tf_key, names[j]), n, _normals)
        noise *= eta
        noise -= 0.5 * eta * eta
        np.exp(noise, out=noise)
        np.abs(eps, out=eps)
        eps *= c
        eps += 1.0
        bars[4] = volume_base[j] * volume_level * eps * noise
    if not (np.isfinite(out).all() and (out[:, 2] > 0).all()):
        raise ValueError(
            "simulated prices left the floating-point range; lower drift, volatility or jump sizes, "
            "or simulate a shorter history"
        )
    return out, stressed


def _grid(
    market: SyntheticMarket, timeframe: Timeframe | str, end: pd.Timestamp | str
) -> tuple[Calendar, Timeframe, pd.DatetimeIndex]:
    tf = Timeframe.parse(timeframe)
    calendar = get_calendar(market.calendar)
    grid = calendar.bar_grid(tf, market.origin, _utc(end))
    if len(grid) > MAX_BARS:
        raise ValueError(
            f"{len(grid):,} {tf.value} bars from {market.origin.isoformat()} to {_utc(end).isoformat()} "
            f"exceed the limit of {MAX_BARS:,}; choose an earlier end, a coarser timeframe or a later origin"
        )
    return calendar, tf, grid


def simulate(
    market: SyntheticMarket, timeframe: Timeframe | str, end: pd.Timestamp | str
) -> dict[str, pd.DataFrame]:
    """Simulate every symbol of ``market`` at ``timeframe`` from its origin up to ``end`` (exclusive).

    Returns ``{symbol: canonical bar frame}`` (UTC ``ts`` index of bar open times on the calendar's
    grid, float64 open/high/low/close/volume), in the order of ``market.symbols``. The bars are
    prefix stable: a later ``end`` returns the same earlier bars bit for bit. Naive ``end`` is UTC.
    The frames share one index object; each frame's values are a view of one array per symbol.

    Raises:
        ValueError: for an unknown timeframe, or more than :data:`MAX_BARS` bars.
    """
    calendar, tf, grid = _grid(market, timeframe, end)
    n = len(grid)
    if n == 0:
        return {symbol: empty_bars() for symbol in market.symbols}
    bars_per_year = calendar.bars_per_year(tf)
    bars_per_session = bars_per_year / calendar.sessions_per_year
    profile = _session_profile(calendar, grid, tf, market.volume_profile) if tf.is_intraday else None
    values, _ = _simulate_arrays(market, tf, n, 1.0 / bars_per_year, bars_per_session, profile)
    columns = list(BAR_COLUMNS)
    return {
        symbol: pd.DataFrame(values[j].T, index=grid, columns=columns, copy=False)
        for j, symbol in enumerate(market.symbols)
    }


def simulate_regimes(
    market: SyntheticMarket, timeframe: Timeframe | str, end: pd.Timestamp | str
) -> pd.Series:
    """The market-wide regime of every bar that :func:`simulate` produces: a bool Series named ``stressed``.

    Same index as the frames of :func:`simulate` for the same arguments; True marks the stressed
    regime. Useful as ground truth for regime-detection research.

    Raises:
        ValueError: for an unknown timeframe, or more than :data:`MAX_BARS` bars.
    """
    calendar, tf, grid = _grid(market, timeframe, end)
    bars_per_session = calendar.bars_per_year(tf) / calendar.sessions_per_year
    path = _regime_path(
        market.seed,
        _TIMEFRAME_KEY[tf],
        len(grid),
        market.calm_days * bars_per_session,
        market.stressed_days * bars_per_session,
    )
    return pd.Series(path, index=grid, name="stressed")


class EndRequiredError(NotSupported, ValueError):
    """The synthetic market never ends, so a request must say where to stop (pass ``end``)."""


class SyntheticProvider:
    """The ``synthetic`` provider: bars of a :class:`SyntheticMarket`, sliced from its simulated history.

    The history of each timeframe is simulated from the market's origin and kept for the longest
    ``end`` asked so far; shorter requests are served from it (the simulation is prefix stable, so
    that is exactly what a fresh simulation would return). Thread safe.
    """

    name: str = "synthetic"

    def __init__(self, market: SyntheticMarket) -> None:
        self.market = market
        self._lock = threading.Lock()
        self._cache: dict[Timeframe, tuple[pd.Timestamp, dict[str, pd.DataFrame]]] = {}

    def __repr__(self) -> str:
        m = self.market
        return f"SyntheticProvider(symbols={m.symbols}, calendar={m.calendar!r}, seed={m.seed})"

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of ``symbol`` with ``start <= ts < end`` (UTC; naive times are read as UTC).

        ``start=None`` (or a start before the origin) means from the market's origin.

        Raises:
            NotSupported: when ``symbol`` is not in the market; the message lists the symbols.
            EndRequiredError: (a ``NotSupported`` and a ``ValueError``) when ``end`` is None.
            ValueError: for an unknown timeframe, or more than :data:`MAX_BARS` bars.
        """
        if symbol not in self.market.symbols:
            raise NotSupported(
                f"synthetic market has no symbol {symbol!r}; it simulates {', '.join(self.market.symbols)}"
            )
        if end is None:
            raise EndRequiredError(
                "the synthetic market is unbounded: pass end= (an exclusive UTC timestamp) to say where "
                "the bars stop"
            )
        tf = Timeframe.parse(timeframe)
        end_ts = _utc(end)
        start_ts = self.market.origin if start is None else _utc(start)
        with self._lock:
            cached = self._cache.get(tf)
            if cached is None or cached[0] < end_ts:
                cached = (end_ts, simulate(self.market, tf, end_ts))
                self._cache[tf] = cached
        frame = cached[1][symbol]
        lo, hi = (
            frame.index.searchsorted(start_ts, side="left"),
            frame.index.searchsorted(end_ts, side="left"),
        )
        if hi <= lo:
            return empty_bars()
        return frame.iloc[lo:hi]
