"""features.indicators: TA-Lib parity on the three shipped real series, kinds in/out, errors,
the statistics against pandas, and no look-ahead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features import indicators as ind
from providers.csv import parse_bars_csv

talib = pytest.importorskip("talib")

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
SERIES = ("sp500_daily.csv", "googl_daily.csv", "eurusd_hourly.csv")
RTOL = 1e-9
ATOL = 1e-9


@pytest.fixture(scope="module", params=SERIES)
def bars(request: pytest.FixtureRequest) -> pd.DataFrame:
    return parse_bars_csv(SAMPLES / request.param).bars


def _cols(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(bars[c].to_numpy() for c in ("open", "high", "low", "close", "volume"))


def assert_parity(ours: Any, ref: Any, label: str) -> None:
    """Same NaN rows, and values within 1e-9 relative (1e-9 absolute near zero)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, label
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), f"{label}: NaN rows differ at {np.flatnonzero(nan_a != nan_b)[:5]}"
    assert not np.all(nan_b), f"{label}: reference is all NaN; the series is too short for the test"
    ok = np.isclose(a[~nan_b], b[~nan_b], rtol=RTOL, atol=ATOL)
    if not ok.all():
        rows = np.flatnonzero(~nan_b)[~ok]
        raise AssertionError(
            f"{label}: {rows.size} rows differ, first {rows[:5]}: {a[rows[:3]]} vs {b[rows[:3]]}"
        )


# --------------------------------------------------------------------------- parity with TA-Lib

PERIODS = (14, 5, 30)


@pytest.mark.parametrize("period", (20, 2, 9, 50))
def test_sma_ema_parity(bars: pd.DataFrame, period: int) -> None:
    close = bars["close"].to_numpy()
    assert_parity(ind.sma(close, period), talib.SMA(close, period), f"sma({period})")
    assert_parity(ind.ema(close, period), talib.EMA(close, period), f"ema({period})")


@pytest.mark.parametrize("period", (14, 2, 5, 30))
def test_rsi_parity(bars: pd.DataFrame, period: int) -> None:
    close = bars["close"].to_numpy()
    assert_parity(ind.rsi(close, period), talib.RSI(close, period), f"rsi({period})")


@pytest.mark.parametrize("args", [(12, 26, 9), (5, 35, 5), (3, 10, 16), (12, 12, 1)])
def test_macd_parity(bars: pd.DataFrame, args: tuple[int, int, int]) -> None:
    close = bars["close"].to_numpy()
    for name, a, b in zip(
        ("macd", "signal", "hist"), ind.macd(close, *args), talib.MACD(close, *args), strict=True
    ):
        assert_parity(a, b, f"macd{args} {name}")
    assert np.isnan(ind.macd(close, *args)[0][args[1] + args[2] - 3])
    assert not np.isnan(ind.macd(close, *args)[0][args[1] + args[2] - 2])


@pytest.mark.parametrize(("period", "k"), [(20, 2.0), (5, 1.5), (30, 2.5), (10, 0.0)])
def test_bollinger_parity(bars: pd.DataFrame, period: int, k: float) -> None:
    close = bars["close"].to_numpy()
    ours = ind.bollinger(close, period, k)
    ref = talib.BBANDS(close, period, k, k, 0)
    for name, a, b in zip(("upper", "middle", "lower"), ours, ref, strict=True):
        assert_parity(a, b, f"bollinger({period}, {k}) {name}")


def test_bollinger_is_exact_where_talib_cancels() -> None:
    """Two equal closes have no spread. TA-Lib's E[x^2] - E[x]^2 leaves ~1e-5 there on SPX;
    the two-pass variance gives exactly 0, and agrees with numpy's std elsewhere."""
    close = parse_bars_csv(SAMPLES / "sp500_daily.csv").bars["close"].to_numpy()
    upper, middle, _ = ind.bollinger(close, 2, 2.0)
    windows = np.lib.stride_tricks.sliding_window_view(close, 2)
    ref_std = windows.std(axis=1)
    np.testing.assert_allclose((upper - middle)[1:] / 2.0, ref_std, rtol=1e-9, atol=1e-9)
    equal = np.flatnonzero(windows[:, 0] == windows[:, 1]) + 1
    assert equal.size > 0
    assert np.all(upper[equal] == middle[equal])


@pytest.mark.parametrize("period", (*PERIODS, 1))
def test_atr_parity(bars: pd.DataFrame, period: int) -> None:
    _, high, low, close, _ = _cols(bars)
    assert_parity(ind.atr(high, low, close, period), talib.ATR(high, low, close, period), f"atr({period})")


def test_obv_parity(bars: pd.DataFrame) -> None:
    _, _, _, close, volume = _cols(bars)
    assert_parity(ind.obv(close, volume), talib.OBV(close, volume), "obv")


@pytest.mark.parametrize("period", (10, 1, 25))
def test_roc_parity(bars: pd.DataFrame, period: int) -> None:
    close = bars["close"].to_numpy()
    assert_parity(ind.roc(close, period), talib.ROC(close, period), f"roc({period})")


@pytest.mark.parametrize("args", [(5, 3, 3), (14, 3, 3), (9, 1, 4), (21, 5, 2)])
def test_stoch_parity(bars: pd.DataFrame, args: tuple[int, int, int]) -> None:
    _, high, low, close, _ = _cols(bars)
    fk, sk, sd = args
    ours = ind.stoch(high, low, close, fk, sk, sd)
    ref = talib.STOCH(high, low, close, fk, sk, 0, sd, 0)
    for name, a, b in zip(("k", "d"), ours, ref, strict=True):
        assert_parity(a, b, f"stoch{args} {name}")


@pytest.mark.parametrize("period", (*PERIODS, 2))
@pytest.mark.parametrize(
    ("name", "ref"),
    [("adx", "ADX"), ("cci", "CCI"), ("willr", "WILLR")],
)
def test_hlc_parity(bars: pd.DataFrame, period: int, name: str, ref: str) -> None:
    _, high, low, close, _ = _cols(bars)
    ours = getattr(ind, name)(high, low, close, period)
    assert_parity(ours, getattr(talib, ref)(high, low, close, period), f"{name}({period})")


@pytest.mark.parametrize("period", (*PERIODS, 2))
def test_mfi_parity(bars: pd.DataFrame, period: int) -> None:
    _, high, low, close, volume = _cols(bars)
    assert_parity(
        ind.mfi(high, low, close, volume, period), talib.MFI(high, low, close, volume, period), "mfi"
    )


def test_leading_nan_is_skipped_like_talib(bars: pd.DataFrame) -> None:
    """An input that starts with NaN (another indicator's warm-up) is handled as TA-Lib's wrapper does."""
    _, high, low, close, volume = _cols(bars)
    smoothed = talib.SMA(close, 10)
    assert_parity(ind.ema(smoothed, 20), talib.EMA(smoothed, 20), "ema of sma")
    assert_parity(ind.rsi(smoothed), talib.RSI(smoothed), "rsi of sma")
    assert_parity(ind.obv(smoothed, volume), talib.OBV(smoothed, volume), "obv of sma")
    assert_parity(ind.atr(high, low, smoothed), talib.ATR(high, low, smoothed), "atr with sma close")


# --------------------------------------------------------------------------- kinds in and out

ALL: dict[str, Callable[[pd.DataFrame], Any]] = {
    "sma": lambda b: ind.sma(b["close"], 20),
    "ema": lambda b: ind.ema(b["close"], 20),
    "rsi": lambda b: ind.rsi(b["close"]),
    "macd": lambda b: ind.macd(b["close"]),
    "bollinger": lambda b: ind.bollinger(b["close"]),
    "atr": lambda b: ind.atr(b["high"], b["low"], b["close"]),
    "obv": lambda b: ind.obv(b["close"], b["volume"]),
    "roc": lambda b: ind.roc(b["close"]),
    "stoch": lambda b: ind.stoch(b["high"], b["low"], b["close"]),
    "adx": lambda b: ind.adx(b["high"], b["low"], b["close"]),
    "cci": lambda b: ind.cci(b["high"], b["low"], b["close"]),
    "willr": lambda b: ind.willr(b["high"], b["low"], b["close"]),
    "mfi": lambda b: ind.mfi(b["high"], b["low"], b["close"], b["volume"]),
    "returns": lambda b: ind.returns(b["close"], 5),
    "log_returns": lambda b: ind.log_returns(b["close"]),
    "rolling_volatility": lambda b: ind.rolling_volatility(b["close"]),
    "rolling_zscore": lambda b: ind.rolling_zscore(b["close"]),
    "rolling_skew": lambda b: ind.rolling_skew(b["close"]),
    "rolling_kurt": lambda b: ind.rolling_kurt(b["close"]),
    "volume_zscore": lambda b: ind.volume_zscore(b["volume"]),
}


def _outputs(result: Any) -> tuple[Any, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("name", sorted(ALL))
def test_series_in_series_out_numpy_in_numpy_out(bars: pd.DataFrame, name: str) -> None:
    from_series = _outputs(ALL[name](bars))
    arrays = {c: bars[c].to_numpy() for c in bars.columns}
    from_numpy = _outputs(ALL[name](arrays))  # type: ignore[arg-type]
    for s, a in zip(from_series, from_numpy, strict=True):
        assert isinstance(s, pd.Series)
        assert s.index.equals(bars.index)
        assert s.dtype == np.float64
        assert isinstance(a, np.ndarray)
        assert a.dtype == np.float64 and a.shape == (len(bars),)
        np.testing.assert_array_equal(s.to_numpy(), a)


def test_integer_arrays_are_accepted() -> None:
    x = np.arange(1, 40)
    np.testing.assert_allclose(ind.sma(x, 3)[2:], np.arange(2, 39))


# --------------------------------------------------------------------------- no look-ahead


@pytest.mark.parametrize("name", sorted(ALL))
def test_no_look_ahead(bars: pd.DataFrame, name: str) -> None:
    rng = np.random.default_rng(3)
    full = _outputs(ALL[name](bars))
    for cut in [*sorted(rng.integers(60, len(bars) - 1, size=4)), 61]:
        part = _outputs(ALL[name](bars.iloc[:cut]))
        for f, p in zip(full, part, strict=True):
            np.testing.assert_allclose(p.to_numpy(), f.to_numpy()[:cut], rtol=1e-12, atol=1e-12, err_msg=name)


# --------------------------------------------------------------------------- statistics vs pandas


def test_returns_against_pandas(bars: pd.DataFrame) -> None:
    close = bars["close"]
    pd.testing.assert_series_equal(ind.returns(close, 3), close.pct_change(3), check_names=False)
    ref = np.log(close / close.shift(1))
    np.testing.assert_allclose(ind.log_returns(close).to_numpy(), ref.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("window", (20, 5))
def test_rolling_statistics_against_pandas(bars: pd.DataFrame, window: int) -> None:
    close, volume = bars["close"], bars["volume"]
    lr = np.log(close).diff()
    np.testing.assert_allclose(
        ind.rolling_volatility(close, window).to_numpy(), lr.rolling(window).std().to_numpy(), rtol=1e-7
    )
    z_ref = (close - close.rolling(window).mean()) / close.rolling(window).std()
    np.testing.assert_allclose(
        ind.rolling_zscore(close, window).to_numpy(), z_ref.to_numpy(), rtol=1e-6, atol=1e-7
    )
    vz_ref = (volume - volume.rolling(window).mean()) / volume.rolling(window).std()
    np.testing.assert_allclose(
        ind.volume_zscore(volume, window).to_numpy(), vz_ref.to_numpy(), rtol=1e-6, atol=1e-7
    )
    # pandas' skew/kurt use raw moment sums; compare on returns, where they are accurate
    np.testing.assert_allclose(
        ind.rolling_skew(lr, window).to_numpy(), lr.rolling(window).skew().to_numpy(), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        ind.rolling_kurt(lr, window).to_numpy(), lr.rolling(window).kurt().to_numpy(), rtol=1e-6, atol=1e-6
    )


def test_rolling_warmups_and_constant_windows() -> None:
    x = np.r_[np.ones(10), np.arange(10.0)]
    assert np.isnan(ind.rolling_zscore(x, 5)[:4]).all()
    assert np.isnan(ind.rolling_zscore(x, 5)[4:10]).all()  # constant window: std 0 -> NaN
    assert np.isnan(ind.rolling_skew(x, 5)[4:10]).all()
    assert np.isnan(ind.rolling_kurt(x, 5)[4:10]).all()
    vol = ind.rolling_volatility(np.exp(x), 5)
    assert np.isnan(vol[:5]).all() and not np.isnan(vol[5:]).any()
    assert np.isnan(ind.returns(x, 2)[:2]).all()


def test_calendar_features() -> None:
    idx = pd.date_range("2024-03-08 22:00", periods=5, freq="1h", tz="America/New_York", name="ts")
    hourly = ind.calendar_features(idx, "1h")
    assert list(hourly.columns) == ["day_of_week", "hour"]
    assert hourly.index.equals(idx)
    utc = idx.tz_convert("UTC")
    assert hourly["hour"].tolist() == list(utc.hour)
    assert hourly["day_of_week"].tolist() == list(utc.day_of_week)
    daily = ind.calendar_features(pd.date_range("2024-01-01", periods=7, freq="D", tz="UTC"), "1d")
    assert list(daily.columns) == ["day_of_week"]
    assert daily["day_of_week"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    naive = ind.calendar_features(pd.DatetimeIndex(["2024-01-01 05:00"]), "1m")
    assert naive["hour"].tolist() == [5]


# --------------------------------------------------------------------------- errors


def _x() -> np.ndarray:
    return np.linspace(1.0, 2.0, 50)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ind.sma(_x(), 0), r"period must be >= 1"),
        (lambda: ind.sma(_x(), 2.5), r"period must be an integer"),
        (lambda: ind.ema(_x(), True), r"period must be an integer"),
        (lambda: ind.rsi(_x(), 1), r"rsi: period must be >= 2"),
        (lambda: ind.macd(_x(), 26, 12), r"slow \(12\) must be >= fast \(26\)"),
        (lambda: ind.macd(_x(), signal=0), r"signal must be >= 1"),
        (lambda: ind.bollinger(_x(), 20, -1.0), r"k must be a finite number >= 0"),
        (lambda: ind.bollinger(_x(), 1), r"period must be >= 2"),
        (
            lambda: ind.atr(_x(), _x()[:-1], _x()),
            r"low has 49 rows but high has 50; pass inputs of equal length",
        ),
        (lambda: ind.obv(_x().reshape(5, 10), _x()), r"pass a 1-D array"),
        (lambda: ind.sma([1.0, 2.0], 1), r"pass a 1-D numpy array or a pandas Series"),
        (lambda: ind.sma(np.array(["a", "b"]), 1), r"pass a numeric"),
        (lambda: ind.sma(pd.DataFrame({"close": _x()}), 2), r"pass one column"),
        (lambda: ind.stoch(_x(), _x(), _x(), 0), r"fastk must be >= 1"),
        (lambda: ind.adx(_x(), _x(), _x(), 1), r"adx: period must be >= 2"),
        (lambda: ind.mfi(_x(), _x(), _x(), _x()[:3]), r"equal length"),
        (lambda: ind.rolling_skew(_x(), 2), r"window must be >= 3"),
        (lambda: ind.rolling_kurt(_x(), 3), r"window must be >= 4"),
        (lambda: ind.returns(_x(), 0), r"n must be >= 1"),
        (lambda: ind.calendar_features(pd.Index([1, 2]), "1h"), r"pass a pandas DatetimeIndex"),  # type: ignore[arg-type]
        (lambda: ind.calendar_features(pd.DatetimeIndex([]), "5m"), r"unknown timeframe"),
        (
            lambda: ind.atr(pd.Series(_x()), pd.Series(_x(), index=range(1, 51)), pd.Series(_x())),
            r"indexes differ; align them",
        ),
    ],
)
def test_bad_input_says_what_to_pass(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_short_and_empty_inputs_are_all_nan() -> None:
    assert ind.rsi(np.ones(5)).shape == (5,) and np.isnan(ind.rsi(np.ones(5))).all()
    assert ind.adx(np.ones(3), np.ones(3), np.ones(3)).shape == (3,)
    assert ind.sma(np.array([], dtype=float), 3).shape == (0,)
    assert ind.obv(np.array([]), np.array([])).shape == (0,)
    assert np.isnan(ind.macd(np.full(40, np.nan))[0]).all()
