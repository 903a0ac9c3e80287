"""Backtest reports on real backtests of the shipped SP500 sample: figures, monthly returns against
an independent pandas computation, the metrics table, the tearsheet and its escaping."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestResult, Costs, run
from backtest.report import (
    METRIC_LABELS,
    equity_drawdown_figure,
    metrics_table,
    monthly_returns,
    monthly_returns_figure,
    new_report_folder,
    rolling_sharpe_figure,
    write_tearsheet,
)
from providers.csv import parse_bars_csv

ROOT = Path(__file__).resolve().parents[2]
COSTS = Costs(commission_bps=1.0, slippage_bps=2.0, min_fee=0.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    # The last ~4 years of daily SP500 bars: enough months and trades, still fast.
    return parse_bars_csv(ROOT / "data" / "samples" / "sp500_daily.csv").bars.iloc[-1000:]


@pytest.fixture(scope="module")
def results(bars: pd.DataFrame) -> dict[str, BacktestResult]:
    close = bars["close"]
    trend = (close > close.rolling(20).mean()).astype("float64").rename("SPX")
    rng = np.random.default_rng(7)
    coin = pd.Series(rng.integers(0, 2, len(bars)).astype("float64"), index=bars.index, name="SPX")
    return {
        "sma 20 long/flat": run(bars, trend, costs=COSTS),
        "buy and hold": run(bars, pd.Series(1.0, index=bars.index, name="SPX"), costs=COSTS),
        "random long/flat": run(bars, coin, costs=COSTS),
    }


@pytest.fixture(scope="module")
def strategy(results: dict[str, BacktestResult]) -> BacktestResult:
    return results["sma 20 long/flat"]


def _png(fig: object) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- figures


def test_equity_drawdown_figure(results: dict[str, BacktestResult], strategy: BacktestResult) -> None:
    fig = equity_drawdown_figure(results)
    top, bottom = fig.axes
    assert [line.get_label() for line in top.get_lines()] == list(results)
    for line, result in zip(top.get_lines(), results.values(), strict=True):
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), result.equity.to_numpy())
    (dd_line,) = bottom.get_lines()
    drawdown = np.asarray(dd_line.get_ydata(), dtype=float)
    assert drawdown.max() <= 0.0
    # The plotted drawdown is the one the engine reports.
    assert drawdown.min() == pytest.approx(strategy.metrics["max_drawdown"], rel=1e-9)
    data = _png(fig)
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_monthly_returns_match_independent_pandas(strategy: BacktestResult) -> None:
    table = monthly_returns(strategy)
    # Independently: pandas' month-end resampling of the compounded per-bar returns, pivoted.
    monthly = (1.0 + strategy.returns).resample("ME").prod() - 1.0
    ends = pd.DatetimeIndex(monthly.index)
    expected = (
        pd.DataFrame({"year": ends.year, "month": ends.month, "r": monthly.to_numpy()})
        .pivot(index="year", columns="month", values="r")
        .reindex(columns=range(1, 13))
    )
    assert table.columns.tolist() == list(range(1, 13))
    assert table.index.tolist() == expected.index.tolist()
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    # The same months from the equity curve: each month-end equity over the previous one (the
    # first month over the initial capital).
    equity = strategy.equity
    stamps = pd.DatetimeIndex(equity.index)
    month_end = equity.groupby([stamps.year, stamps.month]).last().to_numpy()
    from_equity = (
        np.diff(month_end, prepend=strategy.initial_capital) / np.r_[strategy.initial_capital, month_end[:-1]]
    )
    got = table.stack().dropna().to_numpy()
    np.testing.assert_allclose(got, from_equity, rtol=0, atol=1e-12)


def test_monthly_returns_figure_annotates_every_month(strategy: BacktestResult) -> None:
    table = monthly_returns(strategy)
    fig = monthly_returns_figure(strategy)
    heatmap = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap and colour bar
    texts = [t.get_text() for t in heatmap.texts]
    values = table.to_numpy().ravel()
    assert texts == [f"{v:.1%}" for v in values if np.isfinite(v)]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == [str(y) for y in table.index]
    assert _png(fig).startswith(PNG_MAGIC)


def test_rolling_sharpe_figure(strategy: BacktestResult) -> None:
    assert strategy.periods_per_year == 252.0
    fig = rolling_sharpe_figure(strategy)
    (ax,) = fig.axes
    rolling, full, zero = ax.get_lines()
    assert rolling.get_label() == "rolling Sharpe (126 bars)"  # about 6 months of daily bars
    y = np.asarray(rolling.get_ydata(), dtype=float)
    assert np.isnan(y[:125]).all()
    last = strategy.returns.iloc[-126:]
    assert y[-1] == pytest.approx(last.mean() / last.std() * math.sqrt(252.0), rel=1e-9)
    assert np.asarray(full.get_ydata(), dtype=float)[0] == pytest.approx(strategy.metrics["sharpe"])
    assert np.asarray(zero.get_ydata(), dtype=float)[0] == 0.0
    assert _png(fig).startswith(PNG_MAGIC)

    (ax,) = rolling_sharpe_figure(strategy, window=20).axes
    assert ax.get_lines()[0].get_label() == "rolling Sharpe (20 bars)"
    with pytest.raises(ValueError, match="at least 2"):
        rolling_sharpe_figure(strategy, window=1)
    with pytest.raises(ValueError, match="longer than the backtest"):
        rolling_sharpe_figure(strategy, window=10_000)


# ----------------------------------------------------------------------------------------------- table


def test_metrics_table(results: dict[str, BacktestResult]) -> None:
    table = metrics_table(results)
    assert table.columns.tolist() == list(results)
    assert table.index.tolist() == list(METRIC_LABELS.values())
    assert table.shape == (15, 3)
    assert table.index[:4].tolist() == ["Total return", "Annual return", "Annual volatility", "Sharpe ratio"]
    for name, result in results.items():
        for key, label in METRIC_LABELS.items():
            expected = result.metrics[key]
            got = float(table.loc[label, name])  # type: ignore[arg-type]
            assert got == expected or (math.isnan(got) and math.isnan(expected))
    assert table.loc["Exposure", "buy and hold"] == pytest.approx(0.999, abs=0.002)


def test_bad_input_is_refused(strategy: BacktestResult) -> None:
    with pytest.raises(ValueError, match="non-empty mapping"):
        metrics_table({})
    with pytest.raises(TypeError, match="not a BacktestResult"):
        equity_drawdown_figure({"x": strategy.returns})  # type: ignore[dict-item]


# ------------------------------------------------------------------------------------------- tearsheet


def test_write_tearsheet(
    results: dict[str, BacktestResult], strategy: BacktestResult, tmp_path: Path
) -> None:
    folder = tmp_path / "reports" / "sma"
    path = write_tearsheet(
        results,
        folder,
        title="SMA 20 on SP500",
        subtitle="last 1000 bars, net of costs",
        notes=["Positions decided at the close, filled at the next open."],
        costs=COSTS,
    )
    assert path == folder / "tearsheet.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert "<title>SMA 20 on SP500</title>" in text
    assert "last 1000 bars, net of costs" in text
    assert "filled at the next open" in text
    assert "1 bps commission + 2 bps slippage" in text
    for name in results:
        assert name in text
    for label in METRIC_LABELS.values():
        assert label in text
    assert f"{strategy.metrics['total_return']:.2%}" in text
    assert f"{strategy.metrics['sharpe']:,.2f}" in text
    # Self-contained: three PNGs inline, nothing loaded from elsewhere.
    images = text.split('src="data:image/png;base64,')[1:]
    assert len(images) == 3
    for chunk in images:
        assert base64.b64decode(chunk.split('"', 1)[0]).startswith(PNG_MAGIC)
    assert "http://" not in text and "https://" not in text
    # The last 50 trades of the strategy.
    n_trades = len(strategy.trades)
    assert n_trades > 50
    assert f"Last 50 of {n_trades} trades" in text
    start = text.index('class="dataframe trades"')
    trades_table = text[start : text.index("</table>", start)]
    assert trades_table.count("<tr") == 51  # header + 50 rows
    assert f"<td>{strategy.trades['entry_time'].iloc[-1]:%Y-%m-%d}</td>" in trades_table
    assert f"<td>{strategy.trades['entry_time'].iloc[-51]:%Y-%m-%d}</td>" not in trades_table

    for stem in ("equity_drawdown", "monthly_returns", "rolling_sharpe"):
        assert (folder / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
    csv = pd.read_csv(folder / "metrics.csv", index_col=0)
    pd.testing.assert_frame_equal(
        csv, metrics_table(results), check_names=False, check_exact=False, rtol=1e-12
    )


def test_tearsheet_escapes_user_text(results: dict[str, BacktestResult], tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script>"
    named = {f"<b>{name}</b>": r for name, r in results.items()}
    path = write_tearsheet(named, tmp_path, title=hostile, subtitle="a & b", notes=[hostile])
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;" in text
    assert "<b>sma" not in text and "&lt;b&gt;sma 20 long/flat&lt;/b&gt;" in text
    assert "a &amp; b" in text
    with pytest.raises(ValueError, match="title"):
        write_tearsheet(results, tmp_path, title="  ")


def test_import_is_cheap() -> None:
    code = "import sys, backtest.report; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_each_backtest_run_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = new_report_folder(tmp_path, "fks-forecaster", "3", "long_flat", now=when)
    second = new_report_folder(tmp_path, "fks-forecaster", "3", "long_flat", now=when)  # same second
    other = new_report_folder(tmp_path, "fks/forecaster", "3", "long short")
    assert first != second and first.is_dir() and second.is_dir() and not any(first.iterdir())
    parent = tmp_path / "reports" / "backtests" / "fks-forecaster-v3"
    assert first.parent == parent == second.parent
    assert first.name.startswith("long_flat-20260102T030405-") and len(first.name.rsplit("-", 1)[1]) == 8
    assert other.parent.name == "fks_forecaster-v3" and other.name.startswith("long_short-")
